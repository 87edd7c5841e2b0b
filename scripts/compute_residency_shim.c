/* LD_PRELOAD shim for scripts/compute_residency.py: logs the address and size of every
 * posix_memalign block of 256 KiB or more (ggml_aligned_malloc, so llama.cpp's CPU buffers:
 * weights repacked, KV cache, compute buffers) to the file named by COMPUTE_RESIDENCY_LOG. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int posix_memalign(void **ptr, size_t alignment, size_t size) {
    static int (*real)(void **, size_t, size_t);
    if (!real) {
        real = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    }
    int result = real(ptr, alignment, size);
    const char *log = getenv("COMPUTE_RESIDENCY_LOG");
    if (result == 0 && log && size >= (256u << 10)) {
        char line[96];
        int n = snprintf(line, sizeof line, "%p %zu\n", *ptr, size);
        int fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0644);
        if (fd >= 0) {
            (void)!write(fd, line, (size_t)n);
            close(fd);
        }
    }
    return result;
}
