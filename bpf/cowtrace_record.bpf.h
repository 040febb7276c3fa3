/* cowtrace_record.bpf.h: recording: the ring buffer of events (-e, process
 * events for stack symbolization, `cowtrace record`), and the two programs
 * only a recording needs: not-present faults and address-space syscalls. */
#ifndef COWTRACE_RECORD_BPF_H
#define COWTRACE_RECORD_BPF_H

/* One ring buffer per CPU, created and put in place by user space between
 * load and attach (sized there; this template only types the slots). A
 * single ring shared by every CPU costs each record about 130 ns more when
 * two CPUs fault at once (its lock and producer position bounce between
 * them: bpf_stats, BENCHMARKS.md); per-CPU rings never contend. The reader
 * merges them by time. */
struct events_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1); /* the possible CPUs, set at load; rings for the online ones */
	__type(key, __u32);
	__array(values, struct events_ring);
} events SEC(".maps");

/* This CPU's ring (NULL for a CPU that came online after the rings were made). */
static __always_inline void *this_cpu_events(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&events, &cpu);
}

/* Room for `size` bytes in this CPU's ring, or NULL (counted as lost). */
static __always_inline void *events_reserve(__u64 size)
{
	void *ring = this_cpu_events();
	void *e = ring ? bpf_ringbuf_reserve(ring, size, 0) : 0;
	if (!e)
		count_drop(COWTRACE_DROP_RINGBUF_FULL);
	return e;
}

/* Each CPU's batch of fault events (recording). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cowtrace_event_batch);
} event_batches SEC(".maps");

static __always_inline void fill_event(struct cowtrace_event *e, __u64 now, __u8 type, __u8 class_, __u32 tgid,
				       __u32 tid, __u64 address, __u64 ip, __u32 other_pid)
{
	e->ts_ns = now;
	e->address = address;
	e->ip = ip;
	e->pid = tgid;
	e->tid = tid;
	e->other_pid = other_pid;
	e->type = type;
	e->class_ = class_;
	e->pad[0] = e->pad[1] = 0;
}

/* A fault event into this CPU's batch, sent to the ring when full or old.
 * Only this CPU writes its batch, and the programs that emit fault events
 * never nest on one CPU (no fault or movable allocation in IRQ context):
 * no lock. A ring that has no room loses the whole batch, counted. */
static __always_inline void emit_batched(__u64 now, __u8 type, __u8 class_, __u32 tgid, __u32 tid, __u64 address,
					 __u64 ip, __u32 other_pid)
{
	__u32 zero = 0;
	struct cowtrace_event_batch *b = bpf_map_lookup_elem(&event_batches, &zero);
	if (!b)
		return;
	__u32 n = b->count;
	if (n >= COWTRACE_BATCH_EVENTS)
		n = 0; /* never: a full batch is sent at once */
	if (n == 0) {
		b->ts_ns = now;
		b->type = COWTRACE_EVENT_BATCH;
	}
	fill_event((struct cowtrace_event *)b->events[n], now, type, class_, tgid, tid, address, ip, other_pid);
	b->count = ++n;
	if (n < COWTRACE_BATCH_EVENTS && now - b->ts_ns < COWTRACE_BATCH_MAX_AGE_NS)
		return;
	void *ring = this_cpu_events();
	if (!ring || bpf_ringbuf_output(ring, b, sizeof(*b), cowtrace_cfg.no_wakeup ? BPF_RB_NO_WAKEUP : 0))
		count_drops(COWTRACE_DROP_RINGBUF_FULL, n);
	b->count = 0;
}

/* An event at time `ts` (0: now). */
static __always_inline void emit_at(__u64 ts, __u8 type, __u8 class_, __u32 tgid, __u32 tid,
				    __u64 address, __u64 ip, __u32 other_pid)
{
	bool with_comm = type == COWTRACE_EVENT_FORK || type == COWTRACE_EVENT_EXEC || type == COWTRACE_EVENT_EXIT;
	if (!cowtrace_cfg.emit_events && !(cowtrace_cfg.process_events && with_comm))
		return;
	if (!ts)
		ts = bpf_ktime_get_ns();
	if ((cowtrace_cfg.record_faults & COWTRACE_RECORD_BATCHED) && !with_comm) {
		emit_batched(ts, type, class_, tgid, tid, address, ip, other_pid);
		return;
	}
	struct cowtrace_event *e = events_reserve(with_comm ? sizeof(*e) : COWTRACE_SHORT_EVENT_SIZE);
	if (!e)
		return;
	fill_event(e, ts, type, class_, tgid, tid, address, ip, other_pid);
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

static __always_inline void emit(__u8 type, __u8 class_, __u32 tgid, __u32 tid,
				 __u64 address, __u64 ip, __u32 other_pid)
{
	emit_at(0, type, class_, tgid, tid, address, ip, other_pid);
}

/* Recording: a not-present user fault of a traced task (the model needs to
 * know which pages were populated, and how). No VMA lookup here:
 * bpf_find_vma costs microseconds on this path (its mmap_lock unlock is
 * deferred through irq_work with IRQs off). The write-protect fault that
 * matters carries the VMA kind. */
static __always_inline void emit_first_touch(__u64 ts, struct task_struct *task, unsigned long address,
					     __u64 ip, unsigned long error_code)
{
	emit_at(ts, COWTRACE_EVENT_FIRST_TOUCH, 0, task->tgid, task->pid, address, ip, (__u32)(error_code & 0xff));
}

/* The first touches, where tp_page_fault_user is not attached (the fentry and
 * kprobe tiers with a do_cow_fault hook); elsewhere it emits them itself
 * (COWTRACE_RECORD_IN_FAULT_HOOK): a second program on the same tracepoint
 * costs every fault its dispatch. */
SEC("tp_btf/page_fault_user")
int BPF_PROG(tp_first_touch, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	if (error_code & X86_PF_PROT)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	if (!counters_of(task))
		return 0;
	emit_first_touch(0, task, address, regs->ip, error_code);
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
	struct cowtrace_vm_event *e = events_reserve(sizeof(*e));
	if (!e)
		return 0;
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
