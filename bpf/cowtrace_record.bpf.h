/* cowtrace_record.bpf.h: recording: the ring buffer of events (-e, process
 * events for stack symbolization, `cowtrace record`), and the two programs
 * only a recording needs: not-present faults and address-space syscalls. */
#ifndef COWTRACE_RECORD_BPF_H
#define COWTRACE_RECORD_BPF_H

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

static __always_inline void emit(__u8 type, __u8 class_, __u32 tgid, __u32 tid,
				 __u64 address, __u64 ip, __u32 other_pid)
{
	bool with_comm = type == COWTRACE_EVENT_FORK || type == COWTRACE_EVENT_EXEC || type == COWTRACE_EVENT_EXIT;
	if (!cowtrace_cfg.emit_events && !(cowtrace_cfg.process_events && with_comm))
		return;
	struct cowtrace_event *e = bpf_ringbuf_reserve(&events, with_comm ? sizeof(*e) : COWTRACE_SHORT_EVENT_SIZE, 0);
	if (!e) {
		count_drop(COWTRACE_DROP_RINGBUF_FULL);
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->address = address;
	e->ip = ip;
	e->pid = tgid;
	e->tid = tid;
	e->other_pid = other_pid;
	e->type = type;
	e->class_ = class_;
	e->pad[0] = e->pad[1] = 0;
	if (with_comm)
		bpf_get_current_comm(e->comm, sizeof(e->comm));
	/* Without wakeups the reader polls on a timer, except for an exec: the
	 * recorder reads the new program's maps while the process still runs. */
	__u64 flags = 0;
	if (type == COWTRACE_EVENT_EXEC)
		flags = BPF_RB_FORCE_WAKEUP;
	else if (cowtrace_cfg.no_wakeup)
		flags = BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

/* Recording: every not-present user fault of a traced process (the model
 * needs to know which pages were populated, and how). */
SEC("tp_btf/page_fault_user")
int BPF_PROG(tp_first_touch, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	if (error_code & X86_PF_PROT)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	if (!counters_of(task))
		return 0;
	/* No VMA lookup here: bpf_find_vma costs microseconds on this path (its
	 * mmap_lock unlock is deferred through irq_work with IRQs off). The
	 * write-protect fault that matters carries the VMA kind. */
	emit(COWTRACE_EVENT_FIRST_TOUCH, 0, task->tgid, task->pid, address, regs->ip, (__u32)(error_code & 0xff));
	return 0;
}

/* ---- recording: address-space changes of traced processes --------------- */

#define NR_mmap     9
#define NR_mprotect 10
#define NR_munmap   11
#define NR_brk      12
#define NR_mremap   25
#define NR_madvise  28

/* At the syscall's exit the saved user registers still hold its arguments. */
SEC("tp_btf/sys_exit")
int BPF_PROG(tp_sys_exit_vm, struct pt_regs *regs, long ret)
{
	long nr = regs->orig_ax;
	if (nr != NR_mmap && nr != NR_mprotect && nr != NR_munmap && nr != NR_brk &&
	    nr != NR_mremap && nr != NR_madvise)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	if (!counters_of(task))
		return 0;
	struct cowtrace_vm_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(COWTRACE_DROP_RINGBUF_FULL);
		return 0;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->result = ret;
	e->pid = task->tgid;
	e->tid = task->pid;
	e->nr = nr;
	e->type = COWTRACE_EVENT_ADDRESS_SPACE;
	e->pad[0] = e->pad[1] = e->pad[2] = 0;
	e->arg0 = regs->di;
	e->arg1 = regs->si;
	e->arg2 = regs->dx;
	e->arg3 = regs->r10;
	e->arg4 = regs->r8;
	bpf_ringbuf_submit(e, cowtrace_cfg.no_wakeup ? BPF_RB_NO_WAKEUP : 0);
	return 0;
}

#endif
