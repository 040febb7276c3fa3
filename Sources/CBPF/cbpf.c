#define _GNU_SOURCE
#include "cbpf.h"
#include <stdlib.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
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

static struct btf *vmlinux_cache;

static struct btf *vmlinux_btf(void)
{
	if (!vmlinux_cache)
		vmlinux_cache = btf__load_vmlinux_btf();
	return vmlinux_cache;
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

int cbpf_release_load_memory(void)
{
	btf__free(vmlinux_cache);
	vmlinux_cache = NULL;
	return malloc_trim(0);
}

int cbpf_pipe_cloexec(int fds[2])
{
	return pipe2(fds, O_CLOEXEC);
}
