/* oom.h: the record shared by bpf/oom.bpf.c and the Swift loader (through
 * Sources/CBPF). Plain fixed-width types only, so the layout is the same for
 * clang -target bpf and for the host compiler. */
#ifndef COWTRACE_OOM_H
#define COWTRACE_OOM_H

#define OOM_COMM_LEN 16
#define OOM_CGROUP_NAME_LEN 32
#define OOM_CGROUP_DEPTH 4   /* cgroup path components kept, leaf first */
#define OOM_STACK_DEPTH 24   /* kernel frames of the killing task */

/* What the record holds; the rest of the fields are zero. */
enum oom_kill_flags {
	OOM_VICTIM_READ   = 1 << 0, /* the victim's task_struct was found: rss, adj, uid, cgroup are valid */
	OOM_CONTEXT       = 1 << 1, /* oom_kill_process was seen: totalpages, oom_cgroup, chosen are valid */
	OOM_MEMCG         = 1 << 2, /* oc->memcg != NULL: a memory cgroup hit its limit (needs OOM_CONTEXT) */
	OOM_RSS_EXACT     = 1 << 3, /* rss_* are exact (per-CPU sums, or 6.1's atomic counters) */
	OOM_UID_FROM_TP   = 1 << 4, /* uid came from the tracepoint itself (new prototype) */
};

/* Which program produced the record. */
enum oom_source {
	OOM_SOURCE_MARK_VICTIM_TASK = 1, /* tp_btf/mark_victim (struct task_struct *, uid_t): 6.9+ */
	OOM_SOURCE_MARK_VICTIM_PID  = 2, /* tp_btf/mark_victim (int pid): before 6.9 */
};

/* Lost records, one per-CPU counter each. */
enum oom_drop_reason {
	OOM_DROP_RINGBUF_FULL = 0,
	OOM_DROP_NR = 2,
};

/* One OOM kill: one ring-buffer record, sent from mark_victim. */
struct oom_kill_event {
	__u64 ts_ns;
	/* the victim (sizes in kB, as the kernel's "Killed process" line) */
	__u64 total_vm_kb;
	__u64 anon_rss_kb;
	__u64 file_rss_kb;
	__u64 shmem_rss_kb;
	__u64 swap_kb;
	__u64 pgtables_kb;
	__u64 anon_rss_approx_kb;  /* percpu_counter.count alone (what get_mm_counter reads on 6.2+) */
	__u64 file_rss_approx_kb;
	__u64 shmem_rss_approx_kb;
	__u64 cgroup_id;           /* the victim's memory cgroup (kernfs id = inode of its directory) */
	/* from oom_kill_process (OOM_CONTEXT) */
	__u64 totalpages;          /* the limit the OOM was judged against, in pages */
	__u64 oom_cgroup_id;       /* oc->memcg's cgroup (OOM_MEMCG) */
	__u32 pid;                 /* victim tgid */
	__u32 tid;                 /* victim thread (mark_victim's pid) */
	__u32 uid;
	__s32 oom_score_adj;
	__u32 trigger_pid;         /* current: the task that ran out of memory */
	__u32 trigger_tid;
	__u32 chosen_pid;          /* oc->chosen's tgid (OOM_CONTEXT) */
	__u32 flags;               /* enum oom_kill_flags */
	__u8  source;              /* enum oom_source */
	__u8  cgroup_depth;        /* names filled in cgroup_names, leaf first */
	__u8  oom_cgroup_depth;
	__u8  pad[1];
	__u32 stack_len;           /* bytes of kstack filled */
	char  comm[OOM_COMM_LEN];
	char  trigger_comm[OOM_COMM_LEN];
	char  cgroup_names[OOM_CGROUP_DEPTH][OOM_CGROUP_NAME_LEN];
	char  oom_cgroup_names[OOM_CGROUP_DEPTH][OOM_CGROUP_NAME_LEN];
	__u64 kstack[OOM_STACK_DEPTH]; /* the killing task's kernel stack: mem_cgroup_out_of_memory tells a memcg OOM on the tracepoint tier */
};

/* Settings fixed before load. */
struct oom_config {
	__u32 nr_cpus; /* possible CPUs, for the per-CPU rss sums */
	__u32 pad;
};

#endif
