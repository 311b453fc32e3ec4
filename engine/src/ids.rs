//! What a stored row is called: its position in the gallery and the ids it
//! carries.

/// Which palm a template is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PalmSide {
    /// The left palm.
    Left,
    /// The right palm.
    Right,
}

/// The ids stored with each row (`u128` holds a UUID's bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordIds {
    /// The enrolled feature's id.
    pub feature_id: u128,
    /// The user the feature belongs to.
    pub user_key: u128,
    /// Which palm it is.
    pub palm: PalmSide,
}

/// Position of a record in its gallery, stable for the gallery's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowId(pub u64);
