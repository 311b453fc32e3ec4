//! What the endpoints do, free of HTTP: each function takes the shared state and plain
//! inputs and returns the response data or an [`ApiError`](crate::error::ApiError).

pub(crate) mod capture;
pub(crate) mod challenges;
pub(crate) mod devices;
pub(crate) mod settings;
pub(crate) mod users;
pub(crate) mod views;

use palmlink_engine::PalmSide;

/// `left` / `right` as an engine palm side.
pub(crate) fn palm_side(palm: &str) -> Option<PalmSide> {
    match palm {
        "left" => Some(PalmSide::Left),
        "right" => Some(PalmSide::Right),
        _ => None,
    }
}

/// The contract's name of a palm side.
pub(crate) fn palm_name(side: PalmSide) -> &'static str {
    match side {
        PalmSide::Left => "left",
        PalmSide::Right => "right",
    }
}
