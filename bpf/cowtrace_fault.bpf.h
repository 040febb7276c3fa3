/* cowtrace_fault.bpf.h: what both fault paths (cowtrace_fault_fentry.bpf.h,
 * cowtrace_fault_tp.bpf.h) share: the fault this CPU is handling, the
 * counting of a fault's class and the kind of the VMA it hit. */
#ifndef COWTRACE_FAULT_BPF_H
#define COWTRACE_FAULT_BPF_H

/* One per CPU: a fault runs on one CPU from its first hook to the last (the
 * fentry/kprobe hooks sit in do_wp_page; the tracepoints fire inside the
 * exception, IRQs off). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cowtrace_pending_fault);
} pending_fault SEC(".maps");

/* Counts one fault of class_ in c (the write-protect fault itself is
 * counted when it begins). */
static __always_inline void add_class(struct cowtrace_pid_counters *c, __u8 class_)
{
	switch (class_) {
	case COWTRACE_CLASS_COPY: ADD(c->copies, 1); break;
	case COWTRACE_CLASS_ZERO_FILL: ADD(c->zero_fills, 1); break;
	case COWTRACE_CLASS_FILE_COPY: ADD(c->file_copies, 1); break;
	case COWTRACE_CLASS_SHARED_WRITE: ADD(c->shared_writes, 1); break;
	}
}

static __always_inline struct cowtrace_pending_fault *pending(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&pending_fault, &zero);
}

static __always_inline __u32 vma_kind(struct vm_area_struct *vma)
{
	if (BPF_CORE_READ(vma, vm_flags) & (VM_SHARED | VM_MAYSHARE))
		return COWTRACE_VMA_SHARED;
	return BPF_CORE_READ(vma, vm_file) ? COWTRACE_VMA_FILE_PRIVATE : COWTRACE_VMA_ANON_PRIVATE;
}

#endif
