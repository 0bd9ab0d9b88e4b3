//! The research harness: scenarios (profiles plus the ground truth agents never see), the seeded
//! generator of office classifieds, metrics and the efficiency benchmark, and reports.
