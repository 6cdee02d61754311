//! Every size bound of the data path, named once. Relationships between them are checked at
//! compile time.

/// The largest encoded record batch a producer may send, compressed.
pub const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The largest a batch may grow to when decompressed; bounds the memory a malicious batch can make
/// the broker allocate while validating it.
pub const BATCH_UNCOMPRESSED_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The most records one batch may hold.
pub const BATCH_RECORDS_MAX: u32 = 1 << 20;

/// The largest single record (key + value + headers).
pub const RECORD_BYTES_MAX: usize = 1024 * 1024;

/// The largest gRPC message a node accepts (a produce request carries one batch plus a little).
pub const REQUEST_BYTES_MAX: usize = BATCH_BYTES_MAX + 64 * 1024;

/// The largest produce request a node reads. A batch above [`BATCH_BYTES_MAX`] and within this
/// is still read, so that it is refused in the Produce answer (`BATCH_TOO_LARGE`, naming the
/// limit) like any other bad batch; a request beyond it is refused by gRPC's message limit.
pub const PRODUCE_REQUEST_BYTES_MAX: usize = 4 * BATCH_BYTES_MAX + 64 * 1024;

/// The largest Raft entry: the leader may coalesce several batches into one entry, up to this.
pub const ENTRY_BYTES_MAX: usize = 2 * BATCH_BYTES_MAX;

const _: () = assert!(RECORD_BYTES_MAX <= BATCH_BYTES_MAX);
const _: () = assert!(BATCH_BYTES_MAX <= BATCH_UNCOMPRESSED_BYTES_MAX);
const _: () = assert!(BATCH_BYTES_MAX < REQUEST_BYTES_MAX);
const _: () = assert!(REQUEST_BYTES_MAX <= PRODUCE_REQUEST_BYTES_MAX);
const _: () = assert!(BATCH_BYTES_MAX <= ENTRY_BYTES_MAX);
