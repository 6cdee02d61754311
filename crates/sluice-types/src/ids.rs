//! Identifiers and positions.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_newtype {
    ($(#[$meta:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl From<$inner> for $name {
            fn from(v: $inner) -> Self {
                Self(v)
            }
        }
    };
}

id_newtype!(
    /// A Raft group: group 0 is the metadata registry, every partition replica set is another.
    GroupId(u64),
    "g"
);
id_newtype!(
    /// A broker node of the cluster.
    NodeId(u64),
    "n"
);
id_newtype!(
    /// The position of a record in its partition: dense, assigned on apply, starting at 0.
    Offset(u64),
    ""
);
id_newtype!(
    /// An idempotent producer, allocated by the metadata group. [`ProducerId::NONE`] marks a
    /// producer without idempotence.
    ProducerId(u64),
    "p"
);
id_newtype!(
    /// Fences an older incarnation of the same producer id.
    ProducerEpoch(u32),
    "e"
);
id_newtype!(
    /// A producer's per-partition record sequence number.
    Sequence(u64),
    "s"
);

impl GroupId {
    /// The metadata registry's group.
    pub const META: GroupId = GroupId(0);

    /// The big-endian encoding: byte order is numeric order, so keys prefixed with it sort by group.
    pub fn to_be_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
}

impl ProducerId {
    /// A batch from a producer without idempotence carries this id and is never deduplicated.
    pub const NONE: ProducerId = ProducerId(0);

    pub fn is_none(self) -> bool {
        self == Self::NONE
    }
}

impl Offset {
    /// The offset `n` records after this one.
    #[must_use]
    pub fn plus(self, n: u64) -> Offset {
        Offset(self.0 + n)
    }
}
