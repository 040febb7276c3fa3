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

/* pidfd_open(2), which Swift cannot reach through variadic syscall(). */
int cbpf_pidfd_open(pid_t pid);
/* The number of arguments a BTF tracepoint passes to its programs (the
 * parameters of vmlinux's btf_trace_<name> prototype, without the leading
 * void *), or -errno (-ENOENT: no such tracepoint). Tells mark_victim's
 * prototypes apart: 2 (task, uid) since 6.9, 1 (pid) before. */
int cbpf_vmlinux_tracepoint_arity(const char *name);

#endif

/* ---- ELF symbols, for symbolizing user stacks (--stacks) ---------------- */

/* One function symbol: [address, address + size) in the ELF's virtual addresses. */
struct cbpf_elf_symbol {
	uint64_t address;
	uint64_t size;
	const char *name; /* points into the table's string storage */
};

/* One PT_LOAD segment: file offset <-> virtual address. */
struct cbpf_elf_segment {
	uint64_t offset;
	uint64_t vaddr;
	uint64_t filesz;
};

struct cbpf_elf_table {
	struct cbpf_elf_symbol *symbols; /* sorted by address */
	size_t symbol_count;
	struct cbpf_elf_segment *segments;
	size_t segment_count;
	int is_dynamic;                  /* ET_DYN: addresses are relative to the load base */
	char *strings;
};

/* Reads the function symbols of .symtab (or .dynsym when stripped) and the
 * PT_LOAD segments of the ELF file at `path` with libelf. Returns 0 or a
 * negative errno; free the table with cbpf_elf_table_free. */
int cbpf_elf_table_load(const char *path, struct cbpf_elf_table *table);
void cbpf_elf_table_free(struct cbpf_elf_table *table);
