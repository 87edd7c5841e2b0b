/*
 * Interposes on mmap(2) so that a streaming load can map the model without MAP_POPULATE.
 *
 * llama.cpp (linked statically) maps the model with MAP_POPULATE (src/llama-mmap.cpp), which
 * faults the whole file into the process at load. This object defines `mmap` itself: the static
 * linker resolves llama.cpp's reference to this definition instead of libc's (a definition in a
 * regular object wins over a shared library's). The object is pulled into every binary that calls
 * `llama_rs_set_streaming_load`, which lives in the same object file.
 *
 * While the flag is off, the call is passed through unchanged (the raw system call, which is what
 * glibc's mmap does on 64-bit Linux). While it is on, MAP_POPULATE is cleared from file-backed
 * mappings, and posix_madvise(POSIX_MADV_WILLNEED) is skipped (llama.cpp asks for read-ahead of
 * the whole file right after mapping it, which would fill the page cache with every layer);
 * nothing else changes.
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

static atomic_int llama_rs_streaming_load = 0;
static atomic_ulong llama_rs_populate_cleared = 0;
/* The last file mapping made while the flag was on: address and length. */
static _Atomic(uintptr_t) llama_rs_last_addr = 0;
static atomic_size_t llama_rs_last_len = 0;

/* Writes the address and length of the last file mapping made while the flag was on (0, 0: none). */
void llama_rs_last_streaming_map(uintptr_t *addr, size_t *len) {
    *addr = atomic_load(&llama_rs_last_addr);
    *len = atomic_load(&llama_rs_last_len);
}

void llama_rs_set_streaming_load(int on) { atomic_store(&llama_rs_streaming_load, on ? 1 : 0); }

int llama_rs_streaming_load_enabled(void) { return atomic_load(&llama_rs_streaming_load); }

/* How many mmap calls had MAP_POPULATE cleared since the process started. */
unsigned long llama_rs_populate_cleared_count(void) { return atomic_load(&llama_rs_populate_cleared); }

void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
    int streaming = fd >= 0 && atomic_load(&llama_rs_streaming_load);
    if (streaming && (flags & MAP_POPULATE)) {
        flags &= ~MAP_POPULATE;
        atomic_fetch_add(&llama_rs_populate_cleared, 1);
    }
    void *p = (void *) syscall(SYS_mmap, addr, length, prot, flags, fd, offset);
    if (streaming && p != MAP_FAILED) {
        atomic_store(&llama_rs_last_len, length);
        atomic_store(&llama_rs_last_addr, (uintptr_t) p);
    }
    return p;
}

/* glibc's posix_madvise: POSIX_MADV_DONTNEED is a no-op on Linux (MADV_DONTNEED would discard
 * data), the other advice values equal the MADV_ ones, and the error is returned, not set. */
int posix_madvise(void *addr, size_t len, int advice) {
    if (advice == POSIX_MADV_DONTNEED) {
        return 0;
    }
    if (advice == POSIX_MADV_WILLNEED && atomic_load(&llama_rs_streaming_load)) {
        return 0;
    }
    int saved = errno;
    long r = syscall(SYS_madvise, addr, len, advice);
    int err = r == -1 ? errno : 0;
    errno = saved;
    return err;
}
