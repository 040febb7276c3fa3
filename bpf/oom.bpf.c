// SPDX-License-Identifier: GPL-2.0
/* oom.bpf.c: one ring-buffer record per OOM kill, with what the kernel's
 * "Killed process" line says and what it leaves out (trigger, cgroup, the
 * limit judged against).
 *
 * Variants in this one object; the loader keeps those the kernel allows and
 * switches the others off before load (libbpf-tools style):
 *   tp_mark_victim       tp_btf/mark_victim (struct task_struct *, uid_t): 6.9+
 *   tp_mark_victim_pid   tp_btf/mark_victim (int pid): before 6.9
 *   fentry/fexit oom_kill_process, or kprobe/kretprobe oom_kill_process:
 *                        remember oc (totalpages, memcg, chosen) for the
 *                        mark_victim that follows in the same task.
 * mark_victim runs in the task that ran out of memory (the trigger), right
 * before the kernel prints its "Killed process" line, so the victim's
 * counters read here are the ones that line shows. */
#include "cowtrace_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "oom.h"

char LICENSE[] SEC("license") = "GPL";

#define OOM_MAX_CPUS 256
#define OOM_PAGE_KB 4 /* x86-64 */

const volatile struct oom_config oom_cfg = {};


/* oom_kill_process's oc, per killing thread, until it returns. */
struct oom_context {
	__u64 chosen;       /* struct task_struct * */
	__u64 totalpages;
	__u64 cgroup_id;
	__u32 chosen_pid;
	__u32 chosen_tid;
	__u8  memcg;
	__u8  depth;
	__u8  pad[6];
	char  names[OOM_CGROUP_DEPTH][OOM_CGROUP_NAME_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct oom_context);
} oom_contexts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct oom_context);
} scratch SEC(".maps");

/* Its only purpose: its value's address on each CPU, minus the __percpu
 * pointer the kernel keeps for it, is that CPU's per-CPU offset. Typed ksyms
 * (this_cpu_off) need CONFIG_KALLSYMS_ALL, which the project's hosts lack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} percpu_offset_probe SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OOM_DROP_NR);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 << 10);
} events SEC(".maps");

static __always_inline void count_drop(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&drops, &reason);
	if (n)
		(*n)++;
}

static __always_inline struct kernfs_node___oom *kn_parent(struct kernfs_node___oom *kn)
{
	if (bpf_core_field_exists(kn->__parent))
		return BPF_CORE_READ(kn, __parent);
	return (struct kernfs_node___oom *)BPF_CORE_READ((struct kernfs_node___oom_61 *)kn, parent);
}

/* The cgroup's id and up to OOM_CGROUP_DEPTH names, leaf first; 0x80 in the
 * depth says the path was longer. */
static __always_inline void read_cgroup(struct cgroup *cg, __u64 *id, __u8 *depth,
					char names[OOM_CGROUP_DEPTH][OOM_CGROUP_NAME_LEN])
{
	struct kernfs_node___oom *kn = BPF_CORE_READ(cg, kn);
	__u8 n = 0;
	if (!kn)
		return;
	*id = BPF_CORE_READ(kn, id);
#pragma unroll
	for (int i = 0; i < OOM_CGROUP_DEPTH; i++) {
		struct kernfs_node___oom *parent = kn_parent(kn);
		if (!parent)
			break; /* the hierarchy's root: no name of its own */
		bpf_probe_read_kernel_str(names[i], OOM_CGROUP_NAME_LEN, BPF_CORE_READ(kn, name));
		n++;
		kn = parent;
	}
	if (n == OOM_CGROUP_DEPTH && kn && kn_parent(kn))
		n |= 0x80;
	*depth = n;
}

static __always_inline struct cgroup *task_memory_cgroup(struct task_struct___oom *t)
{
	struct css_set *cs = BPF_CORE_READ(t, cgroups);
	struct cgroup_subsys_state *css = 0;
	__u32 idx = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	if (!cs || idx >= 16)
		return 0;
	bpf_probe_read_kernel(&css, sizeof(css), (void *)cs + bpf_core_field_offset(cs->subsys) + idx * sizeof(void *));
	return css ? BPF_CORE_READ(css, cgroup) : 0;
}

/* A pointer's value as a plain number: the verifier allows no arithmetic
 * between a map value pointer and an unbounded number, but this is only ever
 * used as an address for bpf_probe_read_kernel. */
static __always_inline unsigned long address_of(void *p)
{
	unsigned long v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), &p);
	return v;
}

/* The per-CPU offset of cpu, or 0 with *ok cleared. */
static __always_inline unsigned long percpu_offset(unsigned long base, __u32 cpu, bool *ok)
{
	__u32 zero = 0;
	void *value = bpf_map_lookup_percpu_elem(&percpu_offset_probe, &zero, cpu);
	if (!value || !base) {
		*ok = false;
		return 0;
	}
	return address_of(value) - base;
}

/* One rss counter: the kernel's count, and (6.2+) its exact per-CPU sum. */
static __always_inline void read_rss(struct mm_struct___oom *mm, int member, __u64 *exact, __u64 *approx, bool *is_exact)
{
	long long count;
	if (bpf_core_type_exists(struct mm_rss_stat)) {
		/* 6.1: one atomic per counter, what get_mm_counter() reads. */
		struct mm_struct___oom_61 *old = (void *)mm;
		struct mm_rss_stat *stat = (void *)old + bpf_core_field_offset(old->rss_stat);
		/* atomic_long_t is an anonymous struct in the kernel's BTF, so no
		 * CO-RE relocation can be rooted at it: its layout (one long) is ABI. */
		void *atomic = (void *)stat + bpf_core_field_offset(stat->count) + member * sizeof(long);
		bpf_probe_read_kernel(&count, sizeof(count), atomic);
		*approx = *exact = count > 0 ? count * OOM_PAGE_KB : 0;
		return;
	}
	/* member is not a compile-time constant inside the CO-RE access, so the
	 * element size must come from the kernel's BTF, not from ours. */
	struct percpu_counter *pc = (void *)mm + bpf_core_field_offset(mm->rss_stat) +
				    member * bpf_core_type_size(struct percpu_counter);
	count = BPF_CORE_READ(pc, count);
	*approx = count > 0 ? count * OOM_PAGE_KB : 0;
	unsigned long counters = (unsigned long)BPF_CORE_READ(pc, counters);
	unsigned long base = 0;
	struct bpf_array___oom *probe = (void *)address_of(&percpu_offset_probe);
	bpf_core_read(&base, sizeof(base), &probe->pptrs[0]);
	__u32 cpus = oom_cfg.nr_cpus;
	long long sum = count;
	for (__u32 cpu = 0; cpu < OOM_MAX_CPUS && cpu < cpus; cpu++) {
		bool ok = true;
		unsigned long off = percpu_offset(base, cpu, &ok);
		int local = 0;
		if (!ok) {
			*is_exact = false;
			break;
		}
		bpf_probe_read_kernel(&local, sizeof(local), (void *)(counters + off));
		sum += local;
	}
	*exact = sum > 0 ? sum * OOM_PAGE_KB : 0;
}

/* Fills the victim's part of e from its task_struct. */
static __always_inline void read_victim(struct task_struct___oom *t, struct oom_kill_event *e)
{
	e->pid = BPF_CORE_READ(t, tgid);
	e->tid = BPF_CORE_READ(t, pid);
	BPF_CORE_READ_STR_INTO(&e->comm, t, comm);
	e->oom_score_adj = BPF_CORE_READ(t, signal, oom_score_adj);
	if (!(e->flags & OOM_UID_FROM_TP))
		e->uid = BPF_CORE_READ(t, cred, uid.val);
	struct cgroup *cg = task_memory_cgroup(t);
	if (cg)
		read_cgroup(cg, &e->cgroup_id, &e->cgroup_depth, e->cgroup_names);

	struct mm_struct___oom *mm = BPF_CORE_READ(t, mm);
	if (mm) {
		bool exact = true;
		e->total_vm_kb = BPF_CORE_READ(mm, total_vm) * OOM_PAGE_KB;
		e->pgtables_kb = BPF_CORE_READ(mm, pgtables_bytes.counter) >> 10;
		read_rss(mm, OOM_MM_ANONPAGES, &e->anon_rss_kb, &e->anon_rss_approx_kb, &exact);
		read_rss(mm, OOM_MM_FILEPAGES, &e->file_rss_kb, &e->file_rss_approx_kb, &exact);
		read_rss(mm, OOM_MM_SHMEMPAGES, &e->shmem_rss_kb, &e->shmem_rss_approx_kb, &exact);
		__u64 unused;
		read_rss(mm, OOM_MM_SWAPENTS, &e->swap_kb, &unused, &exact);
		if (exact)
			e->flags |= OOM_RSS_EXACT;
	}
	e->flags |= OOM_VICTIM_READ;
}

static __always_inline struct oom_kill_event *begin_event(void *ctx, __u8 source)
{
	struct oom_kill_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(OOM_DROP_RINGBUF_FULL);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	__u64 id = bpf_get_current_pid_tgid();
	e->ts_ns = bpf_ktime_get_ns();
	e->source = source;
	e->trigger_pid = id >> 32;
	e->trigger_tid = (__u32)id;
	bpf_get_current_comm(e->trigger_comm, sizeof(e->trigger_comm));
	long n = bpf_get_stack(ctx, e->kstack, sizeof(e->kstack), 0);
	e->stack_len = n > 0 ? n : 0;
	return e;
}

/* Adds what oom_kill_process saw, if it ran in this task; returns oc->chosen. */
static __always_inline struct task_struct___oom *add_context(struct oom_kill_event *e)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct oom_context *c = bpf_map_lookup_elem(&oom_contexts, &tid);
	if (!c)
		return 0;
	e->flags |= OOM_CONTEXT | (c->memcg ? OOM_MEMCG : 0);
	e->totalpages = c->totalpages;
	e->oom_cgroup_id = c->cgroup_id;
	e->oom_cgroup_depth = c->depth;
	e->chosen_pid = c->chosen_pid;
	__builtin_memcpy(e->oom_cgroup_names, c->names, sizeof(c->names));
	return (struct task_struct___oom *)c->chosen;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(tp_mark_victim, struct task_struct *task, unsigned int uid)
{
	struct oom_kill_event *e = begin_event(ctx, OOM_SOURCE_MARK_VICTIM_TASK);
	if (!e)
		return 0;
	e->uid = uid;
	e->flags |= OOM_UID_FROM_TP;
	add_context(e);
	read_victim((struct task_struct___oom *)task, e);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* Before 6.9 the tracepoint passes only the victim's pid. Its task_struct is
 * oc->chosen when oom_kill_process was seen, or current when the task that
 * ran out of memory is itself the victim; otherwise only the pid is known. */
SEC("tp_btf/mark_victim")
int BPF_PROG(tp_mark_victim_pid, int pid)
{
	struct oom_kill_event *e = begin_event(ctx, OOM_SOURCE_MARK_VICTIM_PID);
	if (!e)
		return 0;
	e->tid = pid;
	struct task_struct___oom *victim = add_context(e);
	if (!victim || BPF_CORE_READ(victim, pid) != pid) {
		struct task_struct___oom *cur = (void *)bpf_get_current_task();
		victim = BPF_CORE_READ(cur, pid) == pid ? cur : 0;
	}
	if (victim)
		read_victim(victim, e);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

static __always_inline int remember_context(struct oom_control *oc)
{
	__u32 zero = 0, tid = (__u32)bpf_get_current_pid_tgid();
	struct oom_context *c = bpf_map_lookup_elem(&scratch, &zero);
	if (!c)
		return 0;
	__builtin_memset(c, 0, sizeof(*c));
	struct task_struct___oom *chosen = BPF_CORE_READ(oc, chosen);
	c->chosen = (__u64)chosen;
	c->chosen_pid = BPF_CORE_READ(chosen, tgid);
	c->chosen_tid = BPF_CORE_READ(chosen, pid);
	c->totalpages = BPF_CORE_READ(oc, totalpages);
	struct mem_cgroup *memcg = BPF_CORE_READ(oc, memcg);
	if (memcg) {
		c->memcg = 1;
		read_cgroup(BPF_CORE_READ(memcg, css.cgroup), &c->cgroup_id, &c->depth, c->names);
	}
	bpf_map_update_elem(&oom_contexts, &tid, c, BPF_ANY);
	return 0;
}

static __always_inline int forget_context(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	bpf_map_delete_elem(&oom_contexts, &tid);
	return 0;
}

SEC("fentry/oom_kill_process")
int BPF_PROG(fentry_oom_kill_process, struct oom_control *oc, const char *message) { return remember_context(oc); }

SEC("fexit/oom_kill_process")
int BPF_PROG(fexit_oom_kill_process, struct oom_control *oc, const char *message) { return forget_context(); }

SEC("kprobe/oom_kill_process")
int BPF_KPROBE(kprobe_oom_kill_process, struct oom_control *oc) { return remember_context(oc); }

SEC("kretprobe/oom_kill_process")
int BPF_KRETPROBE(kretprobe_oom_kill_process) { return forget_context(); }
