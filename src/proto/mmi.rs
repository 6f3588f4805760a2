//! 8/MMI: the Majordomo Management Interface (service names under `mmi.`).
