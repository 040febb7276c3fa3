/* cbpf.h: libbpf for Swift, the structs shared with bpf/cowtrace.bpf.c, and a
 * few shims for what Swift cannot call directly (variadic callbacks, option
 * structs initialised with LIBBPF_OPTS, fork-free process spawning). */
#ifndef CBPF_H
#define CBPF_H

#include <linux/types.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>

#include "../../../bpf/cowtrace.h"
#include "../../../bpf/oom.h"

/* libbpf's messages go to a ring of recent lines instead of stderr, so errors
 * can quote the verifier or attach failure; `verbose` also echoes them. */
void cbpf_capture_libbpf_output(int verbose);
/* Copies the captured lines (newline separated, most recent last) into buf. */
size_t cbpf_captured_libbpf_output(char *buf, size_t size);
void cbpf_clear_libbpf_output(void);

/* Opens an ELF object from memory under the given object name. */
struct bpf_object *cbpf_open_object(const void *data, size_t size, const char *name);

/* The address of a global variable in the object's .rodata (before load),
 * found through the object's BTF, or NULL. */
void *cbpf_rodata_variable(struct bpf_object *obj, const char *name, size_t *size);

/* 1 if vmlinux BTF has a type of that name and kind (BTF_KIND_FUNC,
 * BTF_KIND_TYPEDEF, ...), 0 if not, -errno if BTF cannot be read. */
int cbpf_vmlinux_has_type(const char *name, int kind);


/* pipe2(fds, O_CLOEXEC): glibc declares pipe2 only under _GNU_SOURCE. */
int cbpf_pipe_cloexec(int fds[2]);

/* After the tracers are loaded: frees the kernel's BTF that the tier checks
 * keep (5 MiB or more; loaded again if asked again), then malloc_trim(0)
 * (malloc.h, which Glibc's Swift module leaves out) gives the heap freed
 * since load back to the kernel. */
int cbpf_release_load_memory(void);

/* pidfd_open(2), which Swift cannot reach through variadic syscall(). */
int cbpf_pidfd_open(pid_t pid);
/* The number of arguments a BTF tracepoint passes to its programs (the
 * parameters of vmlinux's btf_trace_<name> prototype, without the leading
 * void *), or -errno (-ENOENT: no such tracepoint). Tells mark_victim's
 * prototypes apart: 2 (task, uid) since 6.9, 1 (pid) before. */
int cbpf_vmlinux_tracepoint_arity(const char *name);

#endif
