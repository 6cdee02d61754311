//! The unsynced writes of one file: whole pages over the backing file, lost unless written back.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The unit in which unsynced data is kept.
pub const PAGE: u64 = 4096;

fn page_len() -> usize {
    usize::try_from(PAGE).expect("a page fits in memory")
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).expect("64-bit target")
}

/// Reads `buf.len()` bytes at `offset`, zeros past the end of the file.
fn read_or_zero(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[done..].fill(0);
    Ok(())
}

/// What one file holds beyond its backing file: pages written and not yet synced, and its
/// size as its writers see it (never below the backing file's).
#[derive(Debug)]
pub struct Unsynced {
    pages: BTreeMap<u64, Box<[u8]>>,
    size: u64,
}

impl Unsynced {
    /// Nothing unsynced yet over a backing file of `size` bytes.
    pub fn new(size: u64) -> Self {
        Unsynced { pages: BTreeMap::new(), size }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The memory the unsynced pages hold.
    pub fn bytes(&self) -> u64 {
        self.pages.len() as u64 * PAGE
    }

    /// Writes `data` at `offset`; returns how many bytes of new pages it took.
    pub fn write(&mut self, file: &File, offset: u64, data: &[u8]) -> io::Result<u64> {
        let end = offset + data.len() as u64;
        let mut added = 0;
        let mut at = offset;
        while at < end {
            let page_no = at / PAGE;
            let page_start = page_no * PAGE;
            let page = match self.pages.entry(page_no) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let mut fresh = vec![0u8; page_len()].into_boxed_slice();
                    // Only bytes below the writers' size hold data; above it a page reads zero.
                    if page_start < self.size {
                        read_or_zero(file, &mut fresh, page_start)?;
                        let valid = to_usize((self.size - page_start).min(PAGE));
                        fresh[valid..].fill(0);
                    }
                    added += PAGE;
                    e.insert(fresh)
                }
            };
            let in_page = to_usize(at - page_start);
            let n = to_usize((end - at).min(PAGE - (at - page_start)));
            let from = to_usize(at - offset);
            page[in_page..in_page + n].copy_from_slice(&data[from..from + n]);
            at += n as u64;
        }
        self.size = self.size.max(end);
        Ok(added)
    }

    /// Up to `len` bytes at `offset`, as the writers see them.
    pub fn read(&self, file: &File, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        if offset >= self.size {
            return Ok(Vec::new());
        }
        let end = self.size.min(offset + u64::from(len));
        let mut out = vec![0u8; to_usize(end - offset)];
        read_or_zero(file, &mut out, offset)?;
        for (&page_no, page) in self.pages.range(offset / PAGE..=(end - 1) / PAGE) {
            let page_start = page_no * PAGE;
            let from = offset.max(page_start);
            let to = end.min(page_start + PAGE);
            out[to_usize(from - offset)..to_usize(to - offset)]
                .copy_from_slice(&page[to_usize(from - page_start)..to_usize(to - page_start)]);
        }
        Ok(out)
    }

    /// The size is now `size` (the backing file has been set to it): pages past it go, and the
    /// tail of the page it ends in reads zero, as after a real truncation. Returns the bytes
    /// of pages dropped.
    pub fn truncate(&mut self, size: u64) -> u64 {
        let dropped = self.pages.split_off(&size.div_ceil(PAGE));
        if !size.is_multiple_of(PAGE)
            && let Some(page) = self.pages.get_mut(&(size / PAGE))
        {
            page[to_usize(size % PAGE)..].fill(0);
        }
        self.size = size;
        dropped.len() as u64 * PAGE
    }

    /// Writes every unsynced page to the backing file and sets its size: what an fsync makes
    /// durable. Returns the bytes of pages it held.
    pub fn write_back(self, file: &File) -> io::Result<u64> {
        let bytes = self.bytes();
        for (page_no, page) in &self.pages {
            file.write_all_at(page, page_no * PAGE)?;
        }
        file.set_len(self.size)?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backing(content: &[u8]) -> File {
        let file = tempfile::tempfile().unwrap();
        file.write_all_at(content, 0).unwrap();
        file
    }

    fn on_disk(file: &File) -> Vec<u8> {
        let len = file.metadata().unwrap().len();
        let mut buf = vec![0; to_usize(len)];
        file.read_exact_at(&mut buf, 0).unwrap();
        buf
    }

    #[test]
    fn writes_are_read_back_but_reach_the_file_only_when_written_back() {
        let file = backing(b"0123456789");
        let mut u = Unsynced::new(10);
        assert_eq!(u.write(&file, 8, b"abcdef").unwrap(), PAGE);
        assert_eq!(u.size(), 14);
        assert_eq!(u.read(&file, 0, 100).unwrap(), b"01234567abcdef");
        assert_eq!(u.read(&file, 12, 1).unwrap(), b"e");
        assert_eq!(on_disk(&file), b"0123456789", "unsynced data must not reach the file");
        assert_eq!(u.write_back(&file).unwrap(), PAGE);
        assert_eq!(on_disk(&file), b"01234567abcdef");
    }

    #[test]
    fn writes_across_pages_and_holes_read_zero() {
        let file = backing(b"");
        let mut u = Unsynced::new(0);
        let data: Vec<u8> = (0..6000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(u.write(&file, PAGE * 3 - 100, &data).unwrap(), 3 * PAGE);
        let got = u.read(&file, 0, u32::MAX).unwrap();
        assert_eq!(got.len(), to_usize(PAGE * 3 - 100) + data.len());
        assert!(got[..to_usize(PAGE * 3 - 100)].iter().all(|&b| b == 0));
        assert_eq!(&got[to_usize(PAGE * 3 - 100)..], &data[..]);
        u.write_back(&file).unwrap();
        assert_eq!(on_disk(&file), got);
    }

    #[test]
    fn truncation_drops_pages_and_zeroes_the_tail() {
        let file = backing(b"");
        let mut u = Unsynced::new(0);
        u.write(&file, 0, &[7u8; 10_000]).unwrap();
        assert_eq!(u.truncate(5000), PAGE);
        file.set_len(5000).unwrap();
        u.write(&file, 6000, b"x").unwrap();
        let got = u.read(&file, 0, u32::MAX).unwrap();
        assert_eq!(got.len(), 6001);
        assert!(got[..5000].iter().all(|&b| b == 7));
        assert!(got[5000..6000].iter().all(|&b| b == 0), "bytes past a truncation read zero");
        assert_eq!(got[6000], b'x');
    }

    #[test]
    fn a_page_over_a_shorter_backing_file_is_filled_from_it() {
        let file = backing(&[1u8; 100]);
        let mut u = Unsynced::new(100);
        u.write(&file, 50, &[2u8; 10]).unwrap();
        let got = u.read(&file, 0, u32::MAX).unwrap();
        assert_eq!(got.len(), 100);
        assert!(got[..50].iter().all(|&b| b == 1) && got[60..].iter().all(|&b| b == 1));
        assert!(got[50..60].iter().all(|&b| b == 2));
    }
}
