//! Bot scoring (to be written): request features, the feature file (`BotFeatures`, an
//! artifact kind) and the scoring module (`BotModule`).
