/*
 * Two things llama.cpp only offers in C++ or through a function pointer, made callable from Rust:
 *
 * 1. The structured memory breakdown of a context (llama.cpp's `llama_get_memory_breakdown`,
 *    declared in its C++ staging header src/llama-ext.h): the bytes of the model's weights, the
 *    context's caches (KV and recurrent state) and the compute buffers, per buffer type. This is
 *    what llama.cpp's own memory fitting (common/fit.cpp) reads; with `no_alloc` it reports the
 *    sizes the buffers would have, without allocating them.
 *
 * 2. The CPU backend's extra weight buffer types (AMX, CPU_REPACK, ...), which llama.cpp reads at
 *    every model load from the null-terminated array that the CPU backend's
 *    `ggml_backend_dev_get_extra_bufts` returns. llama.cpp can only turn them all on or all off
 *    (`use_extra_bufts`); `llama_rs_cpu_extra_bufts_offer` rewrites that array in place so that
 *    loads are offered only some of them. The original list is captured at the first call and
 *    each call rewrites the array from it, so a type removed earlier can be offered again. The
 *    caller serialises calls with model loads (llama-core holds one lock over both).
 *
 * 3. The data address of every tensor of a loaded model (llama.cpp's internal tensor map), which
 *    the layer streamer checks against the model file's mapping before it advises any of it.
 *
 * No function here throws: exceptions end at this boundary.
 */
#include <cstddef>
#include <cstring>
#include <exception>
#include <vector>

#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"
#include "llama-ext.h"
#include "llama-model.h"

extern "C" {

/* One buffer type's share of a context's memory, in bytes. `name` is owned by the buffer type and
 * lives as long as the process. */
struct llama_rs_buffer_usage {
    const char * name;
    bool is_host;
    size_t model;
    size_t context;
    size_t compute;
};

/* Writes up to `capacity` entries of the context's memory breakdown to `out` and returns how many
 * buffer types there are (call again with a larger array when it exceeds `capacity`); returns 0
 * for a null context or when llama.cpp failed. */
size_t llama_rs_memory_breakdown(const struct llama_context * ctx, struct llama_rs_buffer_usage * out,
                                 size_t capacity) {
    if (ctx == nullptr) {
        return 0;
    }
    try {
        const llama_memory_breakdown breakdown = llama_get_memory_breakdown(ctx);
        size_t i = 0;
        for (const auto & [buft, data] : breakdown) {
            if (i < capacity && out != nullptr) {
                out[i].name = ggml_backend_buft_name(buft);
                out[i].is_host = ggml_backend_buft_is_host(buft);
                out[i].model = data.model;
                out[i].context = data.context;
                out[i].compute = data.compute;
            }
            ++i;
        }
        return i;
    } catch (const std::exception &) {
        return 0;
    }
}

static ggml_backend_buffer_type_t * cpu_extra_bufts() {
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (cpu == nullptr) {
        return nullptr;
    }
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(cpu);
    auto get = (ggml_backend_dev_get_extra_bufts_t) ggml_backend_reg_get_proc_address(
        reg, "ggml_backend_dev_get_extra_bufts");
    return get == nullptr ? nullptr : get(cpu);
}

/* The list the CPU backend registered, captured before any rewrite. */
static std::vector<ggml_backend_buffer_type_t> & registered_extra_bufts() {
    static std::vector<ggml_backend_buffer_type_t> registered = [] {
        std::vector<ggml_backend_buffer_type_t> list;
        for (ggml_backend_buffer_type_t * p = cpu_extra_bufts(); p != nullptr && *p != nullptr; ++p) {
            list.push_back(*p);
        }
        return list;
    }();
    return registered;
}

/* Names of the extra buffer types the CPU backend registered (whether offered or not): writes up
 * to `capacity` names and returns the count. */
size_t llama_rs_cpu_extra_bufts_registered(const char ** names, size_t capacity) {
    try {
        const auto & registered = registered_extra_bufts();
        for (size_t i = 0; i < registered.size() && i < capacity && names != nullptr; ++i) {
            names[i] = ggml_backend_buft_name(registered[i]);
        }
        return registered.size();
    } catch (const std::exception &) {
        return 0;
    }
}

/* Names of the extra buffer types model loads are offered now (the array llama.cpp reads). */
size_t llama_rs_cpu_extra_bufts_offered(const char ** names, size_t capacity) {
    size_t n = 0;
    for (ggml_backend_buffer_type_t * p = cpu_extra_bufts(); p != nullptr && *p != nullptr; ++p, ++n) {
        if (n < capacity && names != nullptr) {
            names[n] = ggml_backend_buft_name(*p);
        }
    }
    return n;
}

/* Offers model loads every registered extra buffer type except the `n_excluded` named ones, in the
 * registered order, by rewriting the array llama.cpp reads. Returns the number offered. */
size_t llama_rs_cpu_extra_bufts_offer(const char * const * excluded, size_t n_excluded) {
    try {
        const auto & registered = registered_extra_bufts();
        ggml_backend_buffer_type_t * array = cpu_extra_bufts();
        if (array == nullptr) {
            return 0;
        }
        size_t n = 0;
        for (ggml_backend_buffer_type_t buft : registered) {
            const char * name = ggml_backend_buft_name(buft);
            bool skip = false;
            for (size_t k = 0; k < n_excluded; ++k) {
                if (excluded[k] != nullptr && std::strcmp(excluded[k], name) == 0) {
                    skip = true;
                }
            }
            if (!skip) {
                array[n++] = buft;
            }
        }
        /* The array holds registered.size() entries plus its terminator. */
        for (size_t i = n; i <= registered.size(); ++i) {
            array[i] = nullptr;
        }
        return n;
    } catch (const std::exception &) {
        return 0;
    }
}

/* Calls `visit` with the name, data address and size of every tensor of `model` (llama.cpp's
 * internal tensor map, which its loader fills with the address each weight got); returns the
 * count. The layer streamer checks these against the model file's mapping before it touches it. */
typedef void (*llama_rs_tensor_visitor)(const char * name, const void * data, size_t n_bytes, void * user);

size_t llama_rs_model_tensors(const struct llama_model * model, llama_rs_tensor_visitor visit, void * user) {
    if (model == nullptr || visit == nullptr) {
        return 0;
    }
    try {
        size_t n = 0;
        for (const auto & [name, tensor] : llama_internal_get_tensor_map(model)) {
            visit(name.c_str(), tensor->data, ggml_nbytes(tensor), user);
            ++n;
        }
        return n;
    } catch (const std::exception &) {
        return 0;
    }
}

}  // extern "C"
