/* cowtrace.h: the structs and constants shared by bpf/cowtrace.bpf.c (with
 * its bpf/cowtrace_*.bpf.h) and the Swift loader (through Sources/CBPF). Plain fixed-width types only, so the
 * layout is the same for clang -target bpf and for the host compiler. */
#ifndef COWTRACE_H
#define COWTRACE_H

#define COWTRACE_COMM_LEN 16

/* Per-process counters. A live process keeps them in a slot of the
 * process_slots array, found from its tgid through the pid_slots array: two
 * array lookups the verifier inlines, where task-local storage cost a helper
 * call of about 60 ns per fault. When the last thread exits they move to a
 * hash keyed by tgid. Updated with atomic adds, since a process's threads
 * fault on several CPUs. */
struct cowtrace_pid_counters {
	__u64 wp_faults;     /* every write-protect fault seen (present + write), and every
			      * not-present write that copied a MAP_PRIVATE file page
			      * (do_cow_fault): the copy-on-write faults, so that reuses
			      * (wp_faults minus the other classes) stay exact */
	__u64 copies;        /* anonymous page copied: CoW after fork */
	__u64 zero_fills;    /* first write to the shared zero page: zeroed, nothing copied */
	__u64 file_copies;   /* MAP_PRIVATE file page copied into an anonymous page (do_wp_page or do_cow_fault) */
	__u64 shared_writes; /* write-protect fault on a MAP_SHARED mapping: never copies */
	__u64 thp_wp_faults; /* write-protect faults on a huge PMD (do_huge_pmd_wp_page) */
	__u64 forks;         /* processes this process forked */
	__u64 execs;         /* execve calls that succeeded */
	/* copies-per-interval histogram: the open interval, kept here so that a
	 * copy costs no hash lookup (the histogram map is touched per interval) */
	__u64 burst_start_ns;
	__u64 burst_copies;
};

/* One slot of process_slots (or of thread_slots, for --threads): 128 bytes,
 * so that two processes faulting on two CPUs never share a cache line (the
 * arrays are mmapable, hence page-aligned). Slot 0 is never used: 0 in
 * pid_slots (tid_slots) means "not counted". */
#define COWTRACE_SLOT_SIZE 128

struct cowtrace_process_slot {
	__u32 id;        /* the owner: its tgid (process_slots) or tid (thread_slots);
			  * 0: free. Checked on every lookup, so a stale index entry
			  * never counts for another owner */
	__u32 tgid;      /* the owner's process */
	struct cowtrace_pid_counters counters; /* threads: only the fault classes */
	char  comm[COWTRACE_COMM_LEN];         /* threads: the thread's name when first counted */
	__u8  pad[COWTRACE_SLOT_SIZE - 8 - sizeof(struct cowtrace_pid_counters) - COWTRACE_COMM_LEN];
};

/* pid_slots (tid_slots): element i holds the slots of pids 2i and 2i+1
 * (array elements are 8 bytes at least: two pids share one). Sized from
 * kernel.pid_max when that is small (the direct index). Where pid_max is
 * large (4194304, systemd's default) that would lock 4 bytes per possible
 * pid, 16 MiB: then pid_slots is a cache of index_mask + 1 pairs at
 * (id >> 1) & index_mask, and the hash pid_index (tid_index) holds the slot
 * of every counted id (the hashed index). Every slot found either way is
 * checked against its owner. */
struct cowtrace_pid_slot_pair {
	__u32 slot[2];
};

/* Context of the register_process syscall program, by which user space
 * starts counting an existing process (-p, --cgroup) with the same atomic
 * slot allocation as the kernel side. */
struct cowtrace_register_args {
	__u32 tgid;
	__u32 slot;      /* out: the slot, 0 when none was free */
};

/* Per-process identity, written on fork, exec, exit (never per fault). */
struct cowtrace_pid_info {
	__u32 ppid;
	__u32 exit_code;     /* task->exit_code, valid when exited != 0 */
	__u64 start_ns;      /* bpf_ktime_get_ns at fork (0: seen first elsewhere) */
	__u64 exit_ns;
	__u8  exited;
	__u8  pad[7];
	char  comm[COWTRACE_COMM_LEN];
};

/* Where events were lost. Each is a per-CPU counter that user space reports. */
enum cowtrace_drop_reason {
	COWTRACE_DROP_RINGBUF_FULL = 0, /* bpf_ringbuf_reserve failed */
	COWTRACE_DROP_PID_MAP_FULL = 1, /* no room for a new process or thread (no free slot, exited_counters or exited_threads full) */
	COWTRACE_DROP_INFO_MAP_FULL = 2,/* pid_info had no room */
	COWTRACE_DROP_HIST_MAP_FULL = 3,/* histograms or stack_copies had no room */
	COWTRACE_DROP_VMA_BUSY = 4,     /* bpf_find_vma refused (-EBUSY: another lookup's unlock pending on this CPU) */
	COWTRACE_DROP_NR = 5,
};

/* How a write-protect fault ended. */
enum cowtrace_fault_class {
	COWTRACE_CLASS_UNRESOLVED = 0, /* tracepoint tier: no copy seen yet (reuse unless a copy follows) */
	COWTRACE_CLASS_COPY = 1,
	COWTRACE_CLASS_REUSE = 2,
	COWTRACE_CLASS_ZERO_FILL = 3,
	COWTRACE_CLASS_FILE_COPY = 4,
	COWTRACE_CLASS_SHARED_WRITE = 5,
	COWTRACE_CLASS_OTHER = 6,
};

enum cowtrace_event_type {
	COWTRACE_EVENT_WP_FAULT = 1, /* a write-protect fault began */
	COWTRACE_EVENT_RESOLVE = 2,  /* the fault of (pid, tid) copied: class says how */
	COWTRACE_EVENT_FORK = 3,
	COWTRACE_EVENT_EXEC = 4,
	COWTRACE_EVENT_EXIT = 5,
	COWTRACE_EVENT_FIRST_TOUCH = 6, /* recording: a not-present user fault; other_pid = x86 error code */
	COWTRACE_EVENT_ADDRESS_SPACE = 7, /* recording: struct cowtrace_vm_event */
	COWTRACE_EVENT_BATCH = 8, /* recording: struct cowtrace_event_batch */
};

/* Recording: the kind of VMA a fault hit, in bits 8..15 of a fault event's
 * other_pid (bits 0..7: the x86 error code). Lets the model build a mapping
 * it never saw being made (exec, before tracing) with the right backing. */
enum cowtrace_vma_kind {
	COWTRACE_VMA_UNKNOWN = 0,
	COWTRACE_VMA_ANON_PRIVATE = 1,
	COWTRACE_VMA_FILE_PRIVATE = 2,
	COWTRACE_VMA_SHARED = 3,
};

/* One ring-buffer record. Only emitted when cfg.emit_events is set. Fault
 * events (write-protect, resolve, first touch) stop before comm: they are
 * COWTRACE_SHORT_EVENT_SIZE bytes long, the most frequent records of a
 * recording. Fork, exec and exit carry the comm. */
#define COWTRACE_SHORT_EVENT_SIZE 40

struct cowtrace_event {
	__u64 ts_ns;
	__u64 address;   /* faulting address (fault), 0 otherwise */
	__u64 ip;        /* user instruction pointer (tracepoint tier), 0 if unknown */
	__u32 pid;       /* tgid */
	__u32 tid;
	__u32 other_pid; /* fork: child tgid; exit: exit code */
	__u8  type;      /* enum cowtrace_event_type */
	__u8  class_;    /* enum cowtrace_fault_class */
	__u8  pad[2];
	char  comm[COWTRACE_COMM_LEN];
};

/* Recording: fault events in their short form, gathered per CPU and sent to
 * the ring COWTRACE_BATCH_EVENTS at a time as one record (or sooner, once
 * the oldest is COWTRACE_BATCH_MAX_AGE_NS old). Each ring record costs its
 * writer a cache miss on the ring's cold memory, under an atomic that waits
 * for it; the batch is written in per-CPU memory that stays hot, and copied
 * to the ring in one go. User space reads the last partial batch of each CPU
 * from the map once the programs are detached. The header mirrors
 * cowtrace_event's: ts_ns first, type at the same offset. */
#define COWTRACE_BATCH_EVENTS 64
#define COWTRACE_BATCH_MAX_AGE_NS 50000000ULL

struct cowtrace_event_batch {
	__u64 ts_ns;     /* the first event's time */
	__u32 count;     /* events held, the first `count` of events[] */
	__u32 pad0;
	__u64 pad1[2];
	__u32 pad2;
	__u8  type;      /* COWTRACE_EVENT_BATCH */
	__u8  pad3[3];
	__u8  events[COWTRACE_BATCH_EVENTS][COWTRACE_SHORT_EVENT_SIZE];
};

/* Recording: an address-space syscall of a traced process, at its exit.
 * Shares cowtrace_event's first 40 bytes (ts, pid, tid, type at the same
 * offsets), so one ring buffer carries both; `type` tells them apart. */
struct cowtrace_vm_event {
	__u64 ts_ns;
	__s64 result;    /* the syscall's return value (-errno on failure) */
	__u64 arg0;
	__u32 pid;
	__u32 tid;
	__u32 nr;        /* x86-64 syscall number */
	__u8  type;      /* COWTRACE_EVENT_ADDRESS_SPACE */
	__u8  pad[3];
	__u64 arg1;
	__u64 arg2;
	__u64 arg3;
	__u64 arg4;
};

/* Per-process histograms (key: tgid + kind). Log2 buckets as bcc's: slot 0
 * holds 0 and 1, slot i holds [2^i, 2^(i+1)). */
#define COWTRACE_HIST_SLOTS 64

enum cowtrace_hist_kind {
	COWTRACE_HIST_COPY_LATENCY = 0,       /* ns in do_wp_page, faults that copied (fexit/kretprobe) */
	COWTRACE_HIST_COPIES_PER_INTERVAL = 1,/* copies per burst interval in which the process copied */
	COWTRACE_HIST_OFFSET_HEAP = 2,        /* write-protect faults: offset into the mapping, by kind */
	COWTRACE_HIST_OFFSET_STACK = 3,
	COWTRACE_HIST_OFFSET_ANON = 4,
	COWTRACE_HIST_OFFSET_FILE_PRIVATE = 5,
	COWTRACE_HIST_OFFSET_SHARED = 6,
	COWTRACE_HIST_NR = 7,
};

struct cowtrace_hist_key {
	__u32 tgid;
	__u32 kind;     /* enum cowtrace_hist_kind */
};

struct cowtrace_hist {
	__u64 slots[COWTRACE_HIST_SLOTS];
	__u64 sum;
	__u64 count;
};

/* --stacks: copies counted per (process, user stack). */
struct cowtrace_stack_key {
	__u32 tgid;
	__s32 stack_id; /* in the `stacks` stack-trace map; <0: the stack could not be read */
};

/* Which attach tier feeds the fault-path counters. */
enum cowtrace_fault_mode {
	COWTRACE_MODE_FENTRY = 1,     /* fentry do_wp_page + wp_page_copy */
	COWTRACE_MODE_KPROBE = 2,     /* kprobe do_wp_page + wp_page_copy */
	COWTRACE_MODE_TRACEPOINT = 3, /* tp_btf page_fault_user + mm_page_alloc + rss_stat */
};

/* cowtrace_config.record_faults: what a recording adds to the fault path. */
enum cowtrace_record_faults {
	/* first-touch (not-present) faults and address-space syscalls as events */
	COWTRACE_RECORD_FAULTS = 1 << 0,
	/* tp_page_fault_user, attached anyway, emits the first touches: one
	 * program per fault instead of two (tp_first_touch is not loaded) */
	COWTRACE_RECORD_IN_FAULT_HOOK = 1 << 1,
	/* fault events go through the per-CPU batch (struct cowtrace_event_batch) */
	COWTRACE_RECORD_BATCHED = 1 << 2,
};

/* Settings fixed before load: the verifier prunes what they switch off. */
struct cowtrace_config {
	__u32 spawner_tgid;   /* children forked by this process are traced (cowtrace -c) */
	__u8  trace_all;      /* trace every process */
	__u8  emit_events;    /* send per-fault events to the ring buffer */
	__u8  fault_mode;     /* enum cowtrace_fault_mode */
	__u8  copy_by_alloc;  /* fentry/kprobe tiers without wp_page_copy: detect the copy by its allocation */
	__u8  fork_lineage;   /* keep a record per fork: latency, size, copies attributed to it */
	__u8  record_faults;  /* recording: enum cowtrace_record_faults bits */
	__u8  no_wakeup;      /* submit events without waking the reader (it polls on a timer) */
	__u8  histograms;     /* bucket latency, burst size and fault offsets per process */
	__u8  user_stacks;    /* count copies per user stack */
	__u8  mapping_histograms; /* write-protect faults by mapping kind (a VMA lookup per fault on the tracepoint tier) */
	__u8  process_events; /* fork, exec and exit events only (stack symbolization reads maps at exec) */
	__u8  per_thread;     /* also count write-protect faults per thread (thread_slots) */
	__u64 burst_interval_ns; /* copies-per-interval histogram: interval length */
	__u32 process_slots;  /* entries of process_slots (slot 0 unused) */
	__u32 thread_slots;   /* entries of thread_slots (per_thread) */
	__u32 index_mask;     /* 0: direct index; else the hashed index, pid_slots
			       * (tid_slots) holding index_mask + 1 pairs */
};

/* One fork of a traced process (key: child tgid), for `cowtrace forks`. The
 * fork ends, for attribution, when the child execs or exits. */
enum cowtrace_fork_end {
	COWTRACE_FORK_RUNNING = 0,
	COWTRACE_FORK_ENDED_BY_EXEC = 1,
	COWTRACE_FORK_ENDED_BY_EXIT = 2,
};

struct cowtrace_fork_record {
	__u32 parent;
	__u32 child;
	__u64 fork_ns;               /* bpf_ktime_get_ns at sched_process_fork */
	__u64 latency_ns;            /* the parent's time in fork/clone/vfork/clone3 (0: not seen) */
	__u64 total_vm_pages;        /* the parent's mapped pages at fork */
	__u64 parent_copies_at_fork;
	__u64 parent_copies_at_end;
	__u64 child_copies_at_end;
	__u64 end_ns;
	__u8  ended_by;              /* enum cowtrace_fork_end */
	__u8  pad[7];
};

/* Per-CPU: the write-protect fault this CPU is handling right now. */
struct cowtrace_pending_fault {
	__u32 tid;     /* 0: none */
	__u32 tgid;
	__u64 ip;      /* tracepoint tier: ip of the fault (a kernel ip for a kernel-mode
			* fault), to match the allocation */
	__u64 address;
	__u8  resolved;/* enum cowtrace_fault_class once a copy was seen */
	__u8  split_rss;   /* tracepoint tier on 6.1: a copy whose class the thread's
			    * rss cache tells only after the fault (file_rss, shmem_rss) */
	__u8  not_present; /* a not-present write fault (x86 0x6), not a write-protect one:
			    * counted only if it turns out to copy a private file page */
	__u8  kernel_mode; /* the kernel wrote, in a syscall or exec: fentry/kprobe do_cow_fault
			    * (do_fault) with no page_fault_user, so no first-touch event;
			    * tracepoint tier: a page_fault_kernel fault (fault_regs is then
			    * the kernel's exception frame) */
	__u32 slot;    /* the process's slot in process_slots */
	__u64 start_ns;    /* fentry/kprobe tiers with histograms: when do_wp_page began */
	__u64 fault_regs;  /* tracepoint tier: the fault's pt_regs (a kernel address) */
	__u32 thread_slot; /* per_thread: the thread's slot in thread_slots (0: none) */
	__u32 pad2;
	__u64 vma;         /* fentry/kprobe do_cow_fault (do_fault) hooks: the VMA, for the offset histogram */
	__s32 file_rss;    /* split_rss: the thread's cached MM_FILEPAGES at the copy's allocation */
	__s32 shmem_rss;   /* split_rss: its cached MM_SHMEMPAGES then */
	__u64 event_ns;    /* tracepoint tier, events on: the time of the fault's event. Its
			    * resolves carry it + 1 ns instead of a clock read of their own
			    * (bpf_ktime_get_ns costs 40-70 ns a call in a VM: BENCHMARKS.md) */
};

#endif
