/* celf.c: function symbols and PT_LOAD segments of an ELF file, with libelf. */
#define _GNU_SOURCE
#include "celf.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <gelf.h>
#include <libelf.h>

static int celf_symbol_order(const void *a, const void *b)
{
	const struct celf_symbol *x = a, *y = b;
	return x->address < y->address ? -1 : x->address > y->address;
}

static int celf_read_symbols(Elf *elf, Elf_Scn *scn, GElf_Shdr *shdr, struct celf_table *t, size_t *cap, size_t *str_used, size_t *str_cap)
{
	Elf_Data *data = elf_getdata(scn, NULL);
	if (!data || shdr->sh_entsize == 0)
		return 0;
	size_t n = shdr->sh_size / shdr->sh_entsize;
	for (size_t i = 0; i < n; i++) {
		GElf_Sym sym;
		if (!gelf_getsym(data, (int)i, &sym))
			continue;
		if (GELF_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_value == 0)
			continue;
		const char *name = elf_strptr(elf, shdr->sh_link, sym.st_name);
		if (!name || !*name)
			continue;
		size_t len = strlen(name) + 1;
		if (*str_used + len > *str_cap) {
			size_t ncap = (*str_cap ? *str_cap * 2 : 65536) + len;
			char *s = realloc(t->strings, ncap);
			if (!s)
				return -ENOMEM;
			t->strings = s;
			*str_cap = ncap;
		}
		if (t->symbol_count == *cap) {
			size_t ncap = *cap ? *cap * 2 : 1024;
			struct celf_symbol *s = realloc(t->symbols, ncap * sizeof(*s));
			if (!s)
				return -ENOMEM;
			t->symbols = s;
			*cap = ncap;
		}
		memcpy(t->strings + *str_used, name, len);
		/* store the offset for now: strings may move on realloc */
		t->symbols[t->symbol_count].address = sym.st_value;
		t->symbols[t->symbol_count].size = sym.st_size;
		t->symbols[t->symbol_count].name = (const char *)(uintptr_t)*str_used;
		t->symbol_count++;
		*str_used += len;
	}
	return 0;
}

int celf_table_load(const char *path, struct celf_table *table)
{
	memset(table, 0, sizeof(*table));
	if (elf_version(EV_CURRENT) == EV_NONE)
		return -EINVAL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = 0;
	Elf *elf = elf_begin(fd, ELF_C_READ, NULL);
	if (!elf) {
		close(fd);
		return -ENOEXEC;
	}
	GElf_Ehdr ehdr;
	if (!gelf_getehdr(elf, &ehdr)) {
		rc = -ENOEXEC;
		goto out;
	}
	table->is_dynamic = ehdr.e_type == ET_DYN;
	size_t phnum = 0;
	if (elf_getphdrnum(elf, &phnum) == 0 && phnum > 0) {
		table->segments = calloc(phnum, sizeof(*table->segments));
		if (!table->segments) {
			rc = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < phnum; i++) {
			GElf_Phdr ph;
			if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_LOAD) {
				struct celf_segment *s = &table->segments[table->segment_count++];
				s->offset = ph.p_offset;
				s->vaddr = ph.p_vaddr;
				s->filesz = ph.p_filesz;
			}
		}
	}
	size_t cap = 0, str_used = 0, str_cap = 0;
	Elf_Scn *scn = NULL, *dynsym = NULL;
	GElf_Shdr dynsym_hdr;
	int found_symtab = 0;
	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr shdr;
		if (!gelf_getshdr(scn, &shdr))
			continue;
		if (shdr.sh_type == SHT_SYMTAB) {
			found_symtab = 1;
			if ((rc = celf_read_symbols(elf, scn, &shdr, table, &cap, &str_used, &str_cap)))
				goto out;
		} else if (shdr.sh_type == SHT_DYNSYM) {
			dynsym = scn;
			dynsym_hdr = shdr;
		}
	}
	if (!found_symtab && dynsym && (rc = celf_read_symbols(elf, dynsym, &dynsym_hdr, table, &cap, &str_used, &str_cap)))
		goto out;
	for (size_t i = 0; i < table->symbol_count; i++)
		table->symbols[i].name = table->strings + (uintptr_t)table->symbols[i].name;
	if (table->symbol_count)
		qsort(table->symbols, table->symbol_count, sizeof(*table->symbols), celf_symbol_order);
out:
	elf_end(elf);
	close(fd);
	if (rc)
		celf_table_free(table);
	return rc;
}

void celf_table_free(struct celf_table *table)
{
	free(table->symbols);
	free(table->segments);
	free(table->strings);
	memset(table, 0, sizeof(*table));
}
