/* celf.h: the ELF symbol reader for user stacks (cowtrace stat --stacks),
 * over Debian's libelf. Kept apart from CBPF so that symbolizing needs no
 * libbpf. */
#ifndef CELF_H
#define CELF_H

#include <stddef.h>
#include <stdint.h>

/* One function symbol: [address, address + size) in the ELF's virtual addresses. */
struct celf_symbol {
	uint64_t address;
	uint64_t size;
	const char *name; /* points into the table's string storage */
};

/* One PT_LOAD segment: file offset <-> virtual address. */
struct celf_segment {
	uint64_t offset;
	uint64_t vaddr;
	uint64_t filesz;
};

struct celf_table {
	struct celf_symbol *symbols; /* sorted by address */
	size_t symbol_count;
	struct celf_segment *segments;
	size_t segment_count;
	int is_dynamic;                  /* ET_DYN: addresses are relative to the load base */
	char *strings;
};

/* Reads the function symbols of .symtab (or .dynsym when stripped) and the
 * PT_LOAD segments of the ELF file at `path` with libelf. Returns 0 or a
 * negative errno; free the table with celf_table_free. */
int celf_table_load(const char *path, struct celf_table *table);
void celf_table_free(struct celf_table *table);

#endif
