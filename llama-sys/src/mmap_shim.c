/*
 * Interposes on mmap(2) so that a streaming load can map the model without MAP_POPULATE.
 *
 * llama.cpp (linked statically) maps the model with MAP_POPULATE (src/llama-mmap.cpp), which
 * faults the whole file into the process at load. This object defines `mmap` itself: the static
 * linker resolves llama.cpp's reference to this definition instead of libc's (a definition in a
 * regular object wins over a shared library's). The object is pulled into every binary that calls
 * `llama_rs_streaming_load_begin`, which lives in the same object file.
 *
 * Outside a streaming load, the call is passed through unchanged (the raw system call, which is
 * what glibc's mmap does on 64-bit Linux). During one (begun and ended on the loading thread: the
 * flag is per thread), MAP_POPULATE is cleared from file-backed mappings, each is recorded, and
 * posix_madvise(POSIX_MADV_WILLNEED) is skipped (llama.cpp asks for read-ahead of the whole file
 * right after mapping it, which would fill the page cache with every layer); nothing else
 * changes.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static atomic_ulong llama_rs_populate_cleared = 0;

/* The streaming load of this thread: llama.cpp maps the model in the thread that loads it, so a
 * flag and a record per thread keep concurrent loads apart. */
#define LLAMA_RS_MAX_MAPS 16
static __thread int llama_rs_streaming = 0;
static __thread size_t llama_rs_n_maps = 0;
static __thread uintptr_t llama_rs_map_addr[LLAMA_RS_MAX_MAPS];
static __thread size_t llama_rs_map_len[LLAMA_RS_MAX_MAPS];

/* Starts a streaming load on this thread: its file mappings get no MAP_POPULATE and are recorded. */
void llama_rs_streaming_load_begin(void) {
    llama_rs_streaming = 1;
    llama_rs_n_maps = 0;
}

/* Ends this thread's streaming load; writes up to `capacity` of the file mappings it made
 * (address, length) and returns how many it made. */
size_t llama_rs_streaming_load_end(uintptr_t *addrs, size_t *lens, size_t capacity) {
    llama_rs_streaming = 0;
    size_t n = llama_rs_n_maps;
    for (size_t i = 0; i < n && i < capacity && i < LLAMA_RS_MAX_MAPS; ++i) {
        addrs[i] = llama_rs_map_addr[i];
        lens[i] = llama_rs_map_len[i];
    }
    llama_rs_n_maps = 0;
    return n;
}

/* How many mmap calls had MAP_POPULATE cleared since the process started. */
unsigned long llama_rs_populate_cleared_count(void) { return atomic_load(&llama_rs_populate_cleared); }

void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
    int streaming = fd >= 0 && llama_rs_streaming;
    if (streaming && (flags & MAP_POPULATE)) {
        flags &= ~MAP_POPULATE;
        atomic_fetch_add(&llama_rs_populate_cleared, 1);
    }
    void *p = (void *) syscall(SYS_mmap, addr, length, prot, flags, fd, offset);
    if (streaming && p != MAP_FAILED) {
        if (llama_rs_n_maps < LLAMA_RS_MAX_MAPS) {
            llama_rs_map_addr[llama_rs_n_maps] = (uintptr_t) p;
            llama_rs_map_len[llama_rs_n_maps] = length;
        }
        llama_rs_n_maps++;
    }
    return p;
}

/* glibc's posix_madvise: POSIX_MADV_DONTNEED is a no-op on Linux (MADV_DONTNEED would discard
 * data), the other advice values equal the MADV_ ones, and the error is returned, not set. */
int posix_madvise(void *addr, size_t len, int advice) {
    if (advice == POSIX_MADV_DONTNEED) {
        return 0;
    }
    if (advice == POSIX_MADV_WILLNEED && llama_rs_streaming) {
        return 0;
    }
    int saved = errno;
    long r = syscall(SYS_madvise, addr, len, advice);
    int err = r == -1 ? errno : 0;
    errno = saved;
    return err;
}
