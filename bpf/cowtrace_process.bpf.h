/* cowtrace_process.bpf.h: processes: who a traced process is (pid_info:
 * parent, name, start and exit), and fork, exec and exit, seen by tp_btf on
 * every tier. A fork of a traced process starts counting the child; the exit
 * of its last thread moves its counters out of its slot. */
#ifndef COWTRACE_PROCESS_BPF_H
#define COWTRACE_PROCESS_BPF_H

/* Processes whose last thread exited: their final counters, by tgid. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory follows the processes counted, not max_entries */
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct cowtrace_pid_counters);
} exited_counters SEC(".maps");

/* Every traced process, by tgid: the registry user space walks. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory follows the processes counted, not max_entries */
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct cowtrace_pid_info);
} pid_info SEC(".maps");

static __always_inline void note_identity(__u32 tgid, __u32 ppid, struct task_struct *task, bool at_fork)
{
	struct cowtrace_pid_info fresh = { .ppid = ppid };
	struct cowtrace_pid_info *info = lookup_or_try_init(&pid_info, &tgid, &fresh, COWTRACE_DROP_INFO_MAP_FULL);
	if (!info)
		return;
	if (at_fork) {
		/* A recycled pid starts afresh: nothing of the old process stays. */
		info->ppid = ppid;
		info->start_ns = bpf_ktime_get_ns();
		info->exited = 0;
		info->exit_ns = 0;
		info->exit_code = 0;
		bpf_map_delete_elem(&exited_counters, &tgid);
	}
	BPF_CORE_READ_STR_INTO(&info->comm, task, comm);
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(tp_sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 parent_tgid = parent->tgid, child_tgid = child->tgid;
	if (parent_tgid == child_tgid)
		return 0; /* a new thread, not a process */
	struct cowtrace_pid_counters *pc = counters_of(parent);
	bool spawned = cowtrace_cfg.spawner_tgid && parent_tgid == cowtrace_cfg.spawner_tgid;
	if (!pc && !spawned)
		return 0;
	if (pc)
		ADD(pc->forks, 1);
	if (!start_counting(child))
		return 0;
	note_identity(child_tgid, parent_tgid, child, true);
	if (cowtrace_cfg.fork_lineage && pc)
		begin_fork(parent, parent_tgid, child_tgid, pc);
	emit(COWTRACE_EVENT_FORK, 0, parent_tgid, (__u32)bpf_get_current_pid_tgid(), 0, 0, child_tgid);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(tp_sched_process_exec, struct task_struct *p, pid_t old_pid, void *bprm)
{
	/* Keyed by tgid, the counters survive an exec by a non-leader thread
	 * (de_thread gives it the leader's pid). */
	struct cowtrace_pid_counters *c = counters_of(p);
	if (!c)
		return 0;
	ADD(c->execs, 1);
	if (cowtrace_cfg.fork_lineage)
		end_fork(p, COWTRACE_FORK_ENDED_BY_EXEC);
	note_identity(p->tgid, BPF_CORE_READ(p, real_parent, tgid), p, false);
	emit(COWTRACE_EVENT_EXEC, 0, p->tgid, p->pid, 0, 0, 0);
	return 0;
}

/* When the last thread of a traced process exits, its counters move from its
 * process slot to exited_counters, where user space finds them by tgid. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(tp_sched_process_exit, struct task_struct *p)
{
	if (cowtrace_cfg.per_thread)
		thread_exited(p);
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0; /* other threads still run */
	__u32 tgid = p->tgid, slot = 0;
	struct cowtrace_pid_counters *c = counters_by_tgid(tgid, &slot);
	if (!c)
		return 0;
	if (cowtrace_cfg.histograms)
		burst_flush(tgid, c);
	/* The fork record reads the child's counters from its slot: close it
	 * before the slot is freed, or a child that exits without exec shows
	 * 0 copies. */
	if (cowtrace_cfg.fork_lineage)
		end_fork(p, COWTRACE_FORK_ENDED_BY_EXIT);
	struct cowtrace_pid_counters final = *c;
	if (bpf_map_update_elem(&exited_counters, &tgid, &final, BPF_ANY))
		count_drop(COWTRACE_DROP_PID_MAP_FULL);
	release_slot(&process_slots, &pid_slots, &pid_index, tgid, slot);
	note_identity(tgid, BPF_CORE_READ(p, real_parent, tgid), p, false);
	struct cowtrace_pid_info *info = bpf_map_lookup_elem(&pid_info, &tgid);
	if (info) {
		info->exited = 1;
		info->exit_ns = bpf_ktime_get_ns();
		info->exit_code = p->exit_code;
	}
	emit(COWTRACE_EVENT_EXIT, 0, tgid, p->pid, 0, 0, p->exit_code);
	return 0;
}

#endif
