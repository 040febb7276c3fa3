/* cowtrace_hist.bpf.h: histograms (cfg.histograms, cfg.mapping_histograms),
 * bucketed in the kernel, log2 as bcc's, per process and kind; and copies
 * per user stack (cfg.user_stacks). */
#ifndef COWTRACE_HIST_BPF_H
#define COWTRACE_HIST_BPF_H

/* Per-process histograms (cfg.histograms), allocated on first use. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384 * COWTRACE_HIST_NR);
	__type(key, struct cowtrace_hist_key);
	__type(value, struct cowtrace_hist);
} histograms SEC(".maps");

/* --stacks: user stacks of copy faults, and copies per (process, stack). */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
	__uint(max_entries, 16384);
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct cowtrace_stack_key);
	__type(value, __u64);
} stack_copies SEC(".maps");

static __always_inline struct cowtrace_hist *hist_of(__u32 tgid, __u32 kind)
{
	struct cowtrace_hist_key key = { .tgid = tgid, .kind = kind };
	static const struct cowtrace_hist zero = {};
	return lookup_or_try_init(&histograms, &key, &zero, COWTRACE_DROP_HIST_MAP_FULL);
}

static __always_inline __u32 log2_slot(__u64 v)
{
	__u32 r = 0, shift;
	shift = (v > 0xFFFFFFFFULL) << 5; v >>= shift; r |= shift;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	/* Keep clang from folding the mask into the shifts above: the 6.1
	 * verifier must see the final slot bounded. */
	asm volatile("" : "+r"(r));
	return r & (COWTRACE_HIST_SLOTS - 1);
}

static __always_inline void hist_record(struct cowtrace_hist *h, __u64 value)
{
	__u32 slot = log2_slot(value);
	ADD(h->slots[slot], 1);
	ADD(h->sum, value);
	ADD(h->count, 1);
}

static __always_inline void hist_add(__u32 tgid, __u32 kind, __u64 value)
{
	struct cowtrace_hist *h = hist_of(tgid, kind);
	if (h)
		hist_record(h, value);
}

/* One more copy for the burst-size histogram: copies are counted per interval
 * of cfg.burst_interval_ns; an interval's count is bucketed when the next
 * copy falls after it (or at exit). Threads racing on two CPUs may merge. */
static __always_inline void burst_add(__u32 tgid, struct cowtrace_pid_counters *c)
{
	/* Reading the clock is most of this function's cost (tens of ns in a
	 * VM): inside a burst of 16 copies or more, read it every 16th copy. A
	 * burst can then take up to 15 copies of the next interval; the copies
	 * still add up exactly. */
	__u64 open = c->burst_copies;
	if (open >= 16 && (open & 15)) {
		ADD(c->burst_copies, 1);
		return;
	}
	__u64 now = bpf_ktime_get_ns();
	if (now - c->burst_start_ns < cowtrace_cfg.burst_interval_ns) {
		ADD(c->burst_copies, 1);
		return;
	}
	__u64 closed = c->burst_copies;
	c->burst_start_ns = now;
	c->burst_copies = 1;
	if (closed)
		hist_add(tgid, COWTRACE_HIST_COPIES_PER_INTERVAL, closed);
}

static __always_inline void burst_flush(__u32 tgid, struct cowtrace_pid_counters *c)
{
	__u64 open = c->burst_copies;
	c->burst_copies = 0;
	if (open)
		hist_add(tgid, COWTRACE_HIST_COPIES_PER_INTERVAL, open);
}

/* The histogram kind of a write-protect fault in `vma`, from its flags, file
 * and the mm's heap and stack bounds. */
static __always_inline __u32 mapping_hist_kind(struct vm_area_struct *vma, struct mm_struct *mm)
{
	unsigned long flags = BPF_CORE_READ(vma, vm_flags);
	if (flags & (VM_SHARED | VM_MAYSHARE))
		return COWTRACE_HIST_OFFSET_SHARED;
	if (BPF_CORE_READ(vma, vm_file))
		return COWTRACE_HIST_OFFSET_FILE_PRIVATE;
	unsigned long start = BPF_CORE_READ(vma, vm_start), end = BPF_CORE_READ(vma, vm_end);
	unsigned long start_brk = BPF_CORE_READ(mm, start_brk), brk = BPF_CORE_READ(mm, brk);
	unsigned long stack = BPF_CORE_READ(mm, start_stack);
	if (start <= brk && end >= start_brk)
		return COWTRACE_HIST_OFFSET_HEAP;
	if (start <= stack && end >= stack)
		return COWTRACE_HIST_OFFSET_STACK;
	return COWTRACE_HIST_OFFSET_ANON;
}

static __always_inline void offset_add(__u32 tgid, struct vm_area_struct *vma, __u64 address)
{
	struct mm_struct *mm = BPF_CORE_READ(vma, vm_mm);
	hist_add(tgid, mapping_hist_kind(vma, mm), address - BPF_CORE_READ(vma, vm_start));
}

/* A copy happened in the current thread: histograms and stacks. */
static __always_inline void note_copy(void *ctx, __u32 tgid, struct cowtrace_pid_counters *c)
{
	if (cowtrace_cfg.histograms)
		burst_add(tgid, c);
	if (cowtrace_cfg.user_stacks) {
		struct cowtrace_stack_key key = { .tgid = tgid };
		key.stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
		__u64 zero = 0, *n = lookup_or_try_init(&stack_copies, &key, &zero, COWTRACE_DROP_HIST_MAP_FULL);
		if (n)
			ADD(*n, 1);
	}
}

#endif
