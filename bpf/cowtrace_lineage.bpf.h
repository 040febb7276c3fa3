/* cowtrace_lineage.bpf.h: lineage (cfg.fork_lineage, `cowtrace forks`): one
 * record per fork of a traced process, by child tgid: the parent's size, the
 * copies of parent and child while the fork lasts (until the child's first
 * exec or its exit), and the parent's time in the fork syscall. */
#ifndef COWTRACE_LINEAGE_BPF_H
#define COWTRACE_LINEAGE_BPF_H

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct cowtrace_fork_record);
} fork_records SEC(".maps");

/* Threads inside a fork-family syscall, by tid: entry time, and the child
 * sched_process_fork saw (its global tgid: the syscall returns the pid in the
 * parent's namespace, which is not the key of fork_records in a container). */
struct fork_in_progress {
	__u64 start_ns;
	__u32 child;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct fork_in_progress);
} fork_start SEC(".maps");

/* What a process copied so far: the figure a fork's attribution compares. */
static __always_inline __u64 copies_of(struct task_struct *task)
{
	__u32 slot;
	struct cowtrace_pid_counters *c = counters_by_tgid(task->tgid, &slot);
	return c ? c->copies + c->file_copies : 0;
}

/* A traced process forked: the child's record starts with what the parent
 * had copied so far, and the parent's fork syscall, timed since its entry,
 * learns which child it made. */
static __always_inline void begin_fork(struct task_struct *parent, __u32 parent_tgid, __u32 child_tgid,
				       struct cowtrace_pid_counters *pc)
{
	struct cowtrace_fork_record r = {};
	r.parent = parent_tgid;
	r.child = child_tgid;
	r.fork_ns = bpf_ktime_get_ns();
	r.total_vm_pages = BPF_CORE_READ(parent, mm, total_vm);
	r.parent_copies_at_fork = pc->copies + pc->file_copies;
	if (bpf_map_update_elem(&fork_records, &child_tgid, &r, BPF_ANY))
		count_drop(COWTRACE_DROP_INFO_MAP_FULL);
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct fork_in_progress *f = bpf_map_lookup_elem(&fork_start, &tid);
	if (f)
		f->child = child_tgid;
}

/* The first exec or exit of a forked child closes its fork's attribution. */
static __always_inline void end_fork(struct task_struct *p, __u8 how)
{
	__u32 tgid = p->tgid;
	struct cowtrace_fork_record *r = bpf_map_lookup_elem(&fork_records, &tgid);
	if (!r || r->ended_by != COWTRACE_FORK_RUNNING)
		return;
	r->end_ns = bpf_ktime_get_ns();
	r->child_copies_at_end = copies_of(p);
	struct task_struct *parent = p->real_parent;
	if (parent && parent->tgid == r->parent)
		r->parent_copies_at_end = copies_of(parent);
	else
		r->parent_copies_at_end = r->parent_copies_at_fork; /* parent gone: nothing more to attribute */
	r->ended_by = how;
}

/* ---- fork latency: the parent's time in the fork-family syscalls -------- */

#define NR_clone  56
#define NR_fork   57
#define NR_vfork  58
#define NR_clone3 435

static __always_inline bool is_fork_syscall(long nr)
{
	return nr == NR_clone || nr == NR_fork || nr == NR_vfork || nr == NR_clone3;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(tp_sys_enter_fork, struct pt_regs *regs, long id)
{
	if (!is_fork_syscall(id) || !current_counters())
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct fork_in_progress f = { .start_ns = bpf_ktime_get_ns() };
	if (bpf_map_update_elem(&fork_start, &tid, &f, BPF_ANY))
		count_drop(COWTRACE_DROP_INFO_MAP_FULL);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(tp_sys_exit_fork, struct pt_regs *regs, long ret)
{
	if (!is_fork_syscall(regs->orig_ax))
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct fork_in_progress *f = bpf_map_lookup_elem(&fork_start, &tid);
	if (!f)
		return 0;
	__u64 latency = bpf_ktime_get_ns() - f->start_ns;
	__u32 child = f->child;
	bpf_map_delete_elem(&fork_start, &tid);
	if (ret <= 0 || !child)
		return 0; /* the child's return, a failed fork, or a thread */
	struct cowtrace_fork_record *r = bpf_map_lookup_elem(&fork_records, &child);
	if (r)
		r->latency_ns = latency;
	return 0;
}

#endif
