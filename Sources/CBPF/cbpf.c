#define _GNU_SOURCE
#include "cbpf.h"
#include <stdlib.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CAPTURE_SIZE 16384

static char capture[CAPTURE_SIZE];
static size_t capture_len;
static int capture_verbose;
static pthread_mutex_t capture_lock = PTHREAD_MUTEX_INITIALIZER;

static int capture_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	/* One message can be the whole verifier log: keep its end, where the
	 * reason is. */
	char *line = NULL;
	va_list copy;
	va_copy(copy, args);
	int n = vasprintf(&line, fmt, copy);
	va_end(copy);
	if (n < 0)
		return 0;
	if (capture_verbose)
		fputs(line, stderr);
	if (level == LIBBPF_DEBUG && !capture_verbose) {
		free(line);
		return 0;
	}
	const char *text = line;
	size_t len = (size_t)n;
	if (len >= CAPTURE_SIZE / 2) {
		text = line + len - CAPTURE_SIZE / 2;
		len = CAPTURE_SIZE / 2;
	}
	pthread_mutex_lock(&capture_lock);
	if (len >= CAPTURE_SIZE)
		len = CAPTURE_SIZE - 1;
	if (capture_len + len >= CAPTURE_SIZE) {
		/* Keep the most recent half: the failure is at the end. */
		size_t keep = CAPTURE_SIZE / 2;
		if (keep > capture_len)
			keep = capture_len;
		memmove(capture, capture + capture_len - keep, keep);
		capture_len = keep;
		if (capture_len + len >= CAPTURE_SIZE)
			capture_len = 0;
	}
	memcpy(capture + capture_len, text, len);
	capture_len += len;
	pthread_mutex_unlock(&capture_lock);
	free(line);
	return 0;
}

void cbpf_capture_libbpf_output(int verbose)
{
	capture_verbose = verbose;
	libbpf_set_print(capture_print);
}

size_t cbpf_captured_libbpf_output(char *buf, size_t size)
{
	if (!size)
		return 0;
	pthread_mutex_lock(&capture_lock);
	size_t n = capture_len < size - 1 ? capture_len : size - 1;
	memcpy(buf, capture + capture_len - n, n);
	buf[n] = 0;
	pthread_mutex_unlock(&capture_lock);
	return n;
}

void cbpf_clear_libbpf_output(void)
{
	pthread_mutex_lock(&capture_lock);
	capture_len = 0;
	pthread_mutex_unlock(&capture_lock);
}

struct bpf_object *cbpf_open_object(const void *data, size_t size, const char *name)
{
	/* Naming vmlinux's BTF makes libbpf resolve CO-RE relocations against it
	 * alone: without it, a type missing from vmlinux (struct mm_rss_stat on
	 * 6.2+) makes libbpf walk the module BTFs, which needs CAP_SYS_ADMIN and
	 * fails with EPERM under just CAP_BPF and CAP_PERFMON. cowtrace attaches
	 * to no module. */
	static const char vmlinux_btf[] = "/sys/kernel/btf/vmlinux";
	LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = name,
		    .btf_custom_path = access(vmlinux_btf, R_OK) == 0 ? vmlinux_btf : NULL);
	struct bpf_object *obj = bpf_object__open_mem(data, size, &opts);
	if (!obj && !errno)
		errno = EINVAL;
	return obj;
}

void *cbpf_rodata_variable(struct bpf_object *obj, const char *name, size_t *size)
{
	struct btf *btf = bpf_object__btf(obj);
	struct bpf_map *map = NULL, *it;
	if (!btf)
		return NULL;
	bpf_object__for_each_map(it, obj) {
		const char *map_name = bpf_map__name(it);
		size_t n = strlen(map_name);
		if (n >= 7 && strcmp(map_name + n - 7, ".rodata") == 0) {
			map = it;
			break;
		}
	}
	if (!map)
		return NULL;
	int sec_id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
	if (sec_id < 0)
		return NULL;
	const struct btf_type *sec = btf__type_by_id(btf, sec_id);
	const struct btf_var_secinfo *vsi = btf_var_secinfos(sec);
	size_t data_size = 0;
	char *data = bpf_map__initial_value(map, &data_size);
	if (!data)
		return NULL;
	for (int i = 0; i < btf_vlen(sec); i++, vsi++) {
		const struct btf_type *var = btf__type_by_id(btf, vsi->type);
		if (strcmp(btf__name_by_offset(btf, var->name_off), name) == 0) {
			if (vsi->offset + vsi->size > data_size)
				return NULL;
			*size = vsi->size;
			return data + vsi->offset;
		}
	}
	return NULL;
}

static struct btf *vmlinux_btf(void)
{
	static struct btf *vmlinux;
	if (!vmlinux)
		vmlinux = btf__load_vmlinux_btf();
	return vmlinux;
}

int cbpf_vmlinux_has_type(const char *name, int kind)
{
	struct btf *vmlinux = vmlinux_btf();
	if (!vmlinux)
		return -(errno ? errno : ENOENT);
	return btf__find_by_name_kind(vmlinux, name, kind) >= 0 ? 1 : 0;
}

int cbpf_vmlinux_tracepoint_arity(const char *name)
{
	struct btf *vmlinux = vmlinux_btf();
	char typedef_name[128];
	if (!vmlinux)
		return -(errno ? errno : ENOENT);
	if (snprintf(typedef_name, sizeof(typedef_name), "btf_trace_%s", name) >= (int)sizeof(typedef_name))
		return -ENAMETOOLONG;
	int id = btf__find_by_name_kind(vmlinux, typedef_name, BTF_KIND_TYPEDEF);
	if (id < 0)
		return -ENOENT;
	/* typedef -> pointer -> func_proto(void *, args...) */
	const struct btf_type *t = btf__type_by_id(vmlinux, id);
	t = t ? btf__type_by_id(vmlinux, t->type) : NULL;
	if (!t || !btf_is_ptr(t))
		return -EINVAL;
	t = btf__type_by_id(vmlinux, t->type);
	if (!t || !btf_is_func_proto(t) || btf_vlen(t) < 1)
		return -EINVAL;
	return btf_vlen(t) - 1;
}

int cbpf_pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

int cbpf_pipe_cloexec(int fds[2])
{
	return pipe2(fds, O_CLOEXEC);
}

/* ---- ELF symbols ---------------------------------------------------------- */

#include <gelf.h>
#include <libelf.h>

static int cbpf_symbol_order(const void *a, const void *b)
{
	const struct cbpf_elf_symbol *x = a, *y = b;
	return x->address < y->address ? -1 : x->address > y->address;
}

static int cbpf_read_symbols(Elf *elf, Elf_Scn *scn, GElf_Shdr *shdr, struct cbpf_elf_table *t, size_t *cap, size_t *str_used, size_t *str_cap)
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
			struct cbpf_elf_symbol *s = realloc(t->symbols, ncap * sizeof(*s));
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

int cbpf_elf_table_load(const char *path, struct cbpf_elf_table *table)
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
				struct cbpf_elf_segment *s = &table->segments[table->segment_count++];
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
			if ((rc = cbpf_read_symbols(elf, scn, &shdr, table, &cap, &str_used, &str_cap)))
				goto out;
		} else if (shdr.sh_type == SHT_DYNSYM) {
			dynsym = scn;
			dynsym_hdr = shdr;
		}
	}
	if (!found_symtab && dynsym && (rc = cbpf_read_symbols(elf, dynsym, &dynsym_hdr, table, &cap, &str_used, &str_cap)))
		goto out;
	for (size_t i = 0; i < table->symbol_count; i++)
		table->symbols[i].name = table->strings + (uintptr_t)table->symbols[i].name;
	if (table->symbol_count)
		qsort(table->symbols, table->symbol_count, sizeof(*table->symbols), cbpf_symbol_order);
out:
	elf_end(elf);
	close(fd);
	if (rc)
		cbpf_elf_table_free(table);
	return rc;
}

void cbpf_elf_table_free(struct cbpf_elf_table *table)
{
	free(table->symbols);
	free(table->segments);
	free(table->strings);
	memset(table, 0, sizeof(*table));
}
