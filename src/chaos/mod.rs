//! `pirate chaos`: run a whole topology, inject process and message faults, and check the
//! recorded history for lost, duplicated, reordered or wrong replies.

pub mod checker;
pub mod history;
pub mod html;
pub mod live;
pub mod net;
pub mod proxy;
