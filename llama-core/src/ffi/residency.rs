//! Residency control over llama.cpp's mapping of a model file, and the per-node eval callback.
//!
//! - [`StreamingLoad`]: during it, llama.cpp's load on this thread maps the model without
//!   `MAP_POPULATE` and without its whole-file read-ahead (llama-sys interposes on `mmap` and
//!   `posix_madvise`), and the mappings it makes are recorded for that load.
//! - [`ModelMapping`]: the mapping of a loaded model's file, found among its load's recorded
//!   mappings and checked against `/proc/self/maps` (and every tensor's address against the
//!   GGUF offsets). It releases (`MADV_DONTNEED` +
//!   `POSIX_FADV_DONTNEED`) and prefetches (`MADV_WILLNEED`) file ranges, and reports which pages
//!   are resident. It keeps the model alive, so the mapping it advises cannot be unmapped under it.
//! - [`EvalObserver`]: a safe view of llama.cpp's `cb_eval` (see [`super::Context::with_eval_observer`]).

use std::ffi::{c_void, CStr};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use llama_sys as sys;

use super::Model;

/// A streaming load on the calling thread (see the module docs): from [`StreamingLoad::begin`]
/// to [`StreamingLoad::finish`], llama.cpp's mapping of the model on this thread is made without
/// `MAP_POPULATE` and recorded. Other threads' loads are unaffected.
#[derive(Debug)]
pub struct StreamingLoad {
    active: bool,
    /// The interposer's state is per thread: the guard must not move to another one.
    _thread: std::marker::PhantomData<*const ()>,
}

impl StreamingLoad {
    /// Starts one. Where the interposer is not built (not 64-bit Linux), nothing changes and
    /// [`finish`](Self::finish) returns no mapping.
    pub fn begin() -> StreamingLoad {
        StreamingLoad {
            active: sys::streaming_load_begin(),
            _thread: std::marker::PhantomData,
        }
    }

    /// Ends it; returns the file mappings (address, length) this thread made meanwhile.
    pub fn finish(mut self) -> Vec<(usize, usize)> {
        self.active = false;
        sys::streaming_load_end()
    }
}

impl Drop for StreamingLoad {
    fn drop(&mut self) {
        if self.active {
            let _ = sys::streaming_load_end();
        }
    }
}

/// Whether this build can load a model without faulting the whole file in.
pub fn streaming_load_supported() -> bool {
    sys::STREAMING_LOAD_SUPPORTED
}

/// How many `mmap` calls had `MAP_POPULATE` cleared so far in this process.
pub fn populate_cleared_count() -> u64 {
    sys::populate_cleared_count()
}

fn page_size() -> usize {
    rustix::param::page_size()
}

/// The address ranges `/proc/self/maps` lists as mapped from `path` within `within`.
fn mapped_ranges_of(path: &Path, within: Range<usize>) -> Vec<Range<usize>> {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let Some(span) = fields.next() else { continue };
        // perms, offset, dev, inode, then the path (which may hold spaces).
        let rest: Vec<&str> = fields.collect();
        if rest.len() < 5 || Path::new(&rest[4..].join(" ")) != canonical {
            continue;
        }
        let Some((a, b)) = span.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        let (a, b) = (a.max(within.start), b.min(within.end));
        if a < b {
            out.push(a..b);
        }
    }
    out
}

/// The mapping of a loaded model's file (single-file models only).
///
/// Every advice that drops pages is clamped to the address ranges `/proc/self/maps` showed
/// mapped from the model's file when the mapping was set up, after llama.cpp's load had unmapped
/// what it does not use (the header, skipped tensors): what remains is the model's for as long
/// as the model lives, and the mapping holds the model.
pub struct ModelMapping {
    model: Arc<Model>,
    /// Address of file offset 0.
    base: usize,
    /// File length mapped.
    len: usize,
    /// The parts of `base..base + len` still mapped from the file at setup.
    regions: Vec<Range<usize>>,
    /// A descriptor of the same file, for `posix_fadvise`.
    file: File,
}

impl std::fmt::Debug for ModelMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelMapping")
            .field("path", &self.model.path())
            .field("base", &format_args!("{:#x}", self.base))
            .field("len", &self.len)
            .finish()
    }
}

impl ModelMapping {
    /// The mapping of `model`'s file among `maps`, the file mappings its streaming load made
    /// ([`StreamingLoad::finish`]): the one as long as the file that `/proc/self/maps` shows
    /// mapped from it. `None` when there is none (the check that makes advising it sound).
    pub fn of_model(model: &Arc<Model>, maps: &[(usize, usize)]) -> Option<ModelMapping> {
        let file = File::open(model.path()).ok()?;
        let file_len = file.metadata().ok()?.len();
        maps.iter()
            .filter(|&&(_, len)| len as u64 == file_len)
            .find_map(|&(base, len)| {
                let regions = mapped_ranges_of(model.path(), base..base + len);
                (!regions.is_empty()).then_some((base, len, regions))
            })
            .and_then(|(base, len, regions)| {
                Some(ModelMapping {
                    model: Arc::clone(model),
                    base,
                    len,
                    regions,
                    file: file.try_clone().ok()?,
                })
            })
    }

    /// Checks that every tensor llama.cpp placed in this mapping sits at the mapping's base
    /// plus its file offset in `tensors` (the GGUF reader's table), as the streamer assumes.
    /// Returns how many were checked, or the first that is not where it should be.
    pub fn check_tensor_addresses(
        &self,
        tensors: &[crate::gguf::TensorInfo],
    ) -> Result<usize, String> {
        let offsets: std::collections::HashMap<&str, u64> = tensors
            .iter()
            .map(|t| (t.name.as_str(), t.file_offset))
            .collect();
        let mut placed: Vec<(String, usize)> = Vec::new();
        unsafe extern "C" fn visit(
            name: *const std::ffi::c_char,
            data: *const c_void,
            _n_bytes: usize,
            user: *mut c_void,
        ) {
            // SAFETY: `user` is the `placed` vector below, alive for the call that passes it.
            let placed = unsafe { &mut *(user as *mut Vec<(String, usize)>) };
            // SAFETY: `name` is a NUL-terminated string llama.cpp owns for the call.
            let name = unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned();
            placed.push((name, data as usize));
        }
        // SAFETY: the model is valid (held by `self`); `visit` has the expected signature and
        // its user data is `placed`, which outlives the call.
        unsafe {
            sys::llama_rs_model_tensors(
                self.model.as_ptr(),
                visit,
                (&mut placed as *mut Vec<(String, usize)>).cast(),
            )
        };
        let mut checked = 0;
        for (name, address) in &placed {
            let Some(&offset) = offsets.get(name.as_str()) else {
                continue;
            };
            if !(self.base..self.base + self.len).contains(address) {
                continue;
            }
            let expected = self.base + offset as usize;
            if *address != expected {
                return Err(format!(
                    "{name} is at {address:#x} in the mapping, not at {expected:#x} where the file offset places it"
                ));
            }
            checked += 1;
        }
        if checked == 0 {
            return Err("no tensor of the model lies in the mapping".into());
        }
        Ok(checked)
    }

    /// The model whose file this is.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Address of file offset 0 in the mapping.
    pub fn base_address(&self) -> usize {
        self.base
    }

    /// Length of the mapping (the file size).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Page-aligned address range of file range `offsets`: rounded outward, or inward when
    /// `inward` (so a release never touches a page that also holds bytes outside the range).
    fn pages(&self, offsets: &Range<u64>, inward: bool) -> Option<Range<usize>> {
        let ps = page_size();
        let start = usize::try_from(offsets.start).ok()?;
        let end = usize::try_from(offsets.end).ok()?.min(self.len);
        let (start, end) = if inward {
            (start.div_ceil(ps) * ps, end / ps * ps)
        } else {
            (start / ps * ps, end.div_ceil(ps) * ps)
        };
        (start < end).then_some(self.base + start..self.base + end)
    }

    /// The parts of file range `offsets`' pages ([`Self::pages`], rounded inward when `inward`)
    /// that lie in the regions still mapped from the model's file.
    fn mapped_parts(
        &self,
        offsets: &Range<u64>,
        inward: bool,
    ) -> impl Iterator<Item = Range<usize>> + '_ {
        let pages = self.pages(offsets, inward);
        self.regions.iter().filter_map(move |region| {
            let pages = pages.as_ref()?;
            let (start, end) = (pages.start.max(region.start), pages.end.min(region.end));
            (start < end).then_some(start..end)
        })
    }

    /// Drops the pages of file range `offsets` from this process (`MADV_DONTNEED`, within what
    /// is still mapped from the model's file) and, where no other process maps them, from the
    /// page cache (`POSIX_FADV_DONTNEED`).
    pub fn release(&self, offsets: Range<u64>) {
        self.unmap(offsets.clone());
        self.drop_cached(offsets);
    }

    /// Drops the pages of file range `offsets` (rounded inward) from this process
    /// (`MADV_DONTNEED`), within what is still mapped from the model's file.
    pub fn unmap(&self, offsets: Range<u64>) {
        self.advise_mapped(&offsets, true, rustix::mm::Advice::LinuxDontNeed);
    }

    /// Drops the file's pages in `offsets` from the page cache where no process maps them
    /// (`POSIX_FADV_DONTNEED`). The kernel drops only whole folios inside the range: a large
    /// folio that straddles either end stays.
    pub fn drop_cached(&self, offsets: Range<u64>) {
        let len = std::num::NonZeroU64::new(offsets.end.saturating_sub(offsets.start));
        let _ = rustix::fs::fadvise(&self.file, offsets.start, len, rustix::fs::Advice::DontNeed);
    }

    /// Starts reading the pages of file range `offsets` in the background (`MADV_WILLNEED`).
    pub fn prefetch(&self, offsets: Range<u64>) {
        if let Some(pages) = self.pages(&offsets, false) {
            // SAFETY: WILLNEED only schedules read-ahead; it changes no page's contents, so it is
            // sound on any address range (an error for an unmapped page is ignored).
            let _ = unsafe {
                rustix::mm::madvise(
                    pages.start as *mut c_void,
                    pages.len(),
                    rustix::mm::Advice::WillNeed,
                )
            };
        }
    }

    /// Maps the pages of file range `offsets` (rounded outward) into this process now, reading
    /// them from disk where the page cache does not hold them (`MADV_POPULATE_READ`, Linux 5.14
    /// and later; before, only their read-ahead is started, as [`Self::prefetch`] does). A
    /// streaming load maps the file without `MAP_POPULATE`, so its pinned layers would
    /// otherwise be resident only once the graph has read every page of them, and a mixture of
    /// experts' pinned experts that no prompt routed to never: they are held resident as the
    /// plan counts them, as a resident load's are, and the first pass does not wait for them.
    pub fn populate(&self, offsets: Range<u64>) {
        if !self.advise_mapped(&offsets, false, rustix::mm::Advice::LinuxPopulateRead) {
            self.prefetch(offsets);
        }
    }

    /// Gives `advice` (`MADV_DONTNEED` or `MADV_POPULATE_READ`) for the parts of file range
    /// `offsets`' pages that are still mapped from the model's file ([`Self::mapped_parts`]);
    /// false when the kernel refused it for any part.
    fn advise_mapped(
        &self,
        offsets: &Range<u64>,
        inward: bool,
        advice: rustix::mm::Advice,
    ) -> bool {
        debug_assert!(matches!(
            advice,
            rustix::mm::Advice::LinuxDontNeed | rustix::mm::Advice::LinuxPopulateRead
        ));
        let mut all = true;
        for Range { start, end } in self.mapped_parts(offsets, inward) {
            // SAFETY: `start..end` lies inside a region that `/proc/self/maps` showed mapped from
            // the model's file (read-only, MAP_SHARED) after llama.cpp's load unmapped what it
            // does not use; llama.cpp unmaps nothing more until the model is freed, and the held
            // `Arc<Model>` keeps it alive. Neither advice changes the file's contents: dropping
            // clean file-backed pages loses no data (the next access faults them back in from
            // the file), and populating read-only file pages only faults them in.
            all &=
                unsafe { rustix::mm::madvise(start as *mut c_void, end - start, advice) }.is_ok();
        }
        all
    }

    /// Writes back any dirty pages of the model file (`fdatasync`). A file written moments ago
    /// (a fresh download) has dirty page-cache pages, which `POSIX_FADV_DONTNEED` cannot drop:
    /// without this, released layers would stay in the page cache until the kernel's own
    /// writeback ran. Costs nothing when the file is clean.
    pub fn write_back(&self) {
        let _ = rustix::fs::fdatasync(&self.file);
    }

    /// Readies this mapping for streaming: turns off the kernel's read-around on page faults
    /// (`MADV_RANDOM`), so a fault reads only its own page and what is read from disk is what
    /// [`Self::prefetch`] asks for (without it a fault on a page not yet read pulls in
    /// `read_ahead_kb`, 8 MiB on some disks, around it, several layers' worth); and turns off
    /// huge-page mappings of the file's pages (`MADV_NOHUGEPAGE`). The page cache holds a file
    /// in folios of up to 2 MiB, and the kernel maps a whole 2 MiB folio with one page-table
    /// entry when it can: a fault on one page of a streamed layer then maps its neighbours (up
    /// to 2 MiB beyond the layer at each end), and [`Self::unmap`] of any part of such a
    /// folio unmaps all of it, pinned neighbours included, which then fault back in on their
    /// next use. With small mappings a fault maps at most the kernel's fault-around window
    /// (64 KiB) and an unmap drops only its own pages.
    pub fn advise_streaming(&self) {
        for pages in mapped_ranges_of(self.model.path(), self.base..self.base + self.len) {
            for advice in [
                rustix::mm::Advice::Random,
                rustix::mm::Advice::LinuxNoHugepage,
            ] {
                // SAFETY: MADV_RANDOM and MADV_NOHUGEPAGE only change the read-ahead and
                // huge-page policies of the VMAs in the range, which `/proc/self/maps` just
                // listed as mapped from the model's file (kept mapped by the held
                // `Arc<Model>`); they change no page's contents.
                let _ =
                    unsafe { rustix::mm::madvise(pages.start as *mut c_void, pages.len(), advice) };
            }
        }
    }

    /// Pages of file range `offsets` (rounded outward) present in this process's page tables,
    /// from `/proc/self/pagemap` (bit 63), and the number of pages examined.
    pub fn resident_pages(&self, offsets: Range<u64>) -> (usize, usize) {
        let Some(pages) = self.pages(&offsets, false) else {
            return (0, 0);
        };
        let ps = page_size();
        let n = pages.len() / ps;
        let mut buf = vec![0u8; n * 8];
        let read = File::open("/proc/self/pagemap").and_then(|mut f| {
            f.seek(SeekFrom::Start((pages.start / ps * 8) as u64))?;
            f.read_exact(&mut buf)
        });
        if read.is_err() {
            return (0, n);
        }
        let present = buf
            .chunks_exact(8)
            .filter(|e| u64::from_le_bytes((*e).try_into().unwrap_or([0; 8])) >> 63 == 1)
            .count();
        (present, n)
    }

    /// Pages of file range `offsets` (rounded outward) that `mincore` reports in core (for a
    /// file mapping: in the page cache, whoever mapped them), and the number examined.
    pub fn cached_pages(&self, offsets: Range<u64>) -> (usize, usize) {
        let Some(pages) = self.pages(&offsets, false) else {
            return (0, 0);
        };
        let n = pages.len() / page_size();
        let mut vec = vec![0u8; n];
        // SAFETY: the range is page-aligned and inside the model's mapping, which the held
        // `Arc<Model>` keeps alive; `vec` has one byte per page. mincore only reads page tables.
        let rc = unsafe { sys::mincore(pages.start as *mut c_void, pages.len(), vec.as_mut_ptr()) };
        if rc != 0 {
            return (0, n);
        }
        (vec.iter().filter(|b| *b & 1 == 1).count(), n)
    }
}

/// Observes the nodes of llama.cpp's compute graph as they run (`cb_eval`).
pub trait EvalObserver: Send {
    /// Whether to be told when node `name` has been computed. Asking splits the graph there,
    /// so answer true for few nodes.
    fn wants(&mut self, name: &str) -> bool;
    /// Node `name` has been computed.
    fn computed(&mut self, name: &str);
    /// Whether to be shown the inputs of the nodes llama.cpp asks about (see
    /// [`Self::inputs`]); checked before each ask, so an observer can stop after a while.
    fn wants_inputs(&mut self) -> bool {
        false
    }
    /// The inputs of node `name` that are named tensors: their names and data addresses.
    fn inputs(&mut self, _name: &str, _inputs: &[TensorInput<'_>]) {}
}

/// An input of a graph node as llama.cpp holds it.
#[derive(Debug, Clone, Copy)]
pub struct TensorInput<'a> {
    /// Tensor name, e.g. `blk.3.attn_q.weight`.
    pub name: &'a str,
    /// Address of its data (0 when it has none).
    pub address: usize,
}

/// The user data of [`eval_trampoline`]: a thin pointer to the boxed observer.
pub(super) type ObserverBox = Box<Box<dyn EvalObserver>>;

pub(super) unsafe extern "C" fn eval_trampoline(
    t: *mut sys::ggml_tensor,
    ask: bool,
    user_data: *mut c_void,
) -> bool {
    if t.is_null() || user_data.is_null() {
        return false;
    }
    // SAFETY: `user_data` is the `Box<dyn EvalObserver>` inside the context's `ObserverBox`,
    // alive for as long as the context, and llama.cpp calls this from the thread running
    // llama_decode, which holds `&mut Context`, so no other reference to it is live.
    let observer = unsafe { &mut *(user_data as *mut Box<dyn EvalObserver>) };
    // SAFETY: `t` is a valid tensor for the duration of the call; its name is a NUL-terminated
    // array inside the struct.
    let name = unsafe { CStr::from_ptr((*t).name.as_ptr()) };
    let Ok(name) = name.to_str() else {
        return false;
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if ask && observer.wants_inputs() {
            let mut names = Vec::new();
            // SAFETY: `src` is a fixed array of tensor pointers, null or valid for the call, as
            // are their NUL-terminated names.
            unsafe {
                for src in (*t).src.iter().copied().filter(|s| !s.is_null()) {
                    if let Ok(n) = CStr::from_ptr((*src).name.as_ptr()).to_str() {
                        names.push(TensorInput {
                            name: n,
                            address: (*src).data as usize,
                        });
                    }
                }
            }
            observer.inputs(name, &names);
        }
        if ask {
            observer.wants(name)
        } else {
            observer.computed(name);
            true
        }
    }))
    .unwrap_or(!ask)
}
