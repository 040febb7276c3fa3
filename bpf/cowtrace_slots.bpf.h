/* cowtrace_slots.bpf.h: slots, where the counters of a traced process (and,
 * with --threads, of a thread) live, and how a process or thread gets one:
 * claimed with a compare-and-swap at fork, at first sight (--all) or by user
 * space (-p, --cgroup, through the syscall programs at the end), freed when it
 * exits. Every other header finds its counters here. */
#ifndef COWTRACE_SLOTS_BPF_H
#define COWTRACE_SLOTS_BPF_H

/* Live processes: counters in a slot of process_slots, found from the tgid
 * through pid_slots (see cowtrace.h). Both are arrays: the verifier inlines
 * their lookups, so a fault pays no helper call to find its process. User
 * space sizes both (maxProcesses, kernel.pid_max) before load. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 16385);
	__type(key, __u32);
	__type(value, struct cowtrace_process_slot);
} process_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct cowtrace_pid_slot_pair);
} pid_slots SEC(".maps");

/* The hashed index (cowtrace_cfg.index_mask != 0, see cowtrace.h): the slot
 * of every counted tgid, where pid_slots is only a cache. Sized 1 otherwise. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory follows the processes counted, not max_entries */
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} pid_index SEC(".maps");

/* --threads: the same scheme per thread, keyed by tid (sized 1 unless on). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cowtrace_process_slot);
} thread_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cowtrace_pid_slot_pair);
} tid_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory follows the processes counted, not max_entries */
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} tid_index SEC(".maps");

/* Threads that exited, by tid: their final counters and name. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory follows the processes counted, not max_entries */
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cowtrace_process_slot);
} exited_threads SEC(".maps");

/* Where the next slot allocation starts looking. */
__u32 next_slot_hint = 0;
__u32 next_thread_slot_hint = 0;

/* With --all a process is registered at first sight, and named: see
 * cowtrace_process.bpf.h. */
static __always_inline void note_identity(__u32 tgid, __u32 ppid, struct task_struct *task, bool at_fork);

/* The index entry (pid_slots or tid_slots) of id, or NULL when id is beyond
 * kernel.pid_max as it was at load. With the hashed index, the cache entry. */
static __always_inline __u32 *slot_index_entry(void *index_map, __u32 id)
{
	__u32 index = id >> 1;
	if (cowtrace_cfg.index_mask)
		index &= cowtrace_cfg.index_mask;
	struct cowtrace_pid_slot_pair *pair = bpf_map_lookup_elem(index_map, &index);
	if (!pair)
		return 0;
	__u32 *entry = &pair->slot[id & 1];
	/* Keep clang from computing entry before the null check (the
	 * verifier refuses arithmetic on a maybe-null pointer). */
	asm volatile("" : "+r"(entry));
	return entry;
}

/* The slot if id owns it. */
static __always_inline struct cowtrace_process_slot *slot_owned(void *slots_map, __u32 slot, __u32 id)
{
	struct cowtrace_process_slot *s = bpf_map_lookup_elem(slots_map, &slot);
	if (!s || s->id != id || !id)
		return 0;
	return s;
}

/* The counters in process slot `slot` if tgid owns it. */
static __always_inline struct cowtrace_pid_counters *counters_in_slot(__u32 slot, __u32 tgid)
{
	struct cowtrace_process_slot *s = slot_owned(&process_slots, slot, tgid);
	return s ? &s->counters : 0;
}

/* The slot id owns through the index (the cache, then the hash, with the
 * hashed index), or NULL. *slot_out gets its number. */
static __always_inline struct cowtrace_process_slot *slot_by_id(void *slots_map, void *index_map, void *hash_map,
								  __u32 id, __u32 *slot_out)
{
	__u32 *entry = slot_index_entry(index_map, id);
	if (!entry)
		return 0;
	__u32 slot = *entry;
	struct cowtrace_process_slot *s = slot ? slot_owned(slots_map, slot, id) : 0;
	if (!s && cowtrace_cfg.index_mask) {
		__u32 *known = bpf_map_lookup_elem(hash_map, &id);
		if (!known)
			return 0;
		slot = *known;
		s = slot ? slot_owned(slots_map, slot, id) : 0;
	}
	if (s)
		*slot_out = slot;
	return s;
}

/* The counters of a traced process by tgid, or NULL. *slot_out gets its slot. */
static __always_inline struct cowtrace_pid_counters *counters_by_tgid(__u32 tgid, __u32 *slot_out)
{
	struct cowtrace_process_slot *s = slot_by_id(&process_slots, &pid_slots, &pid_index, tgid, slot_out);
	return s ? &s->counters : 0;
}

/* The hashed index: makes `slot` (claimed by id) id's slot in hash_map.
 * Returns slot; or the slot another CPU registered id with meanwhile; or 0
 * when the hash is full. */
static __always_inline __u32 publish_hashed(void *slots_map, void *hash_map, __u32 id, __u32 slot)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (!bpf_map_update_elem(hash_map, &id, &slot, BPF_NOEXIST))
			return slot;
		__u32 *known = bpf_map_lookup_elem(hash_map, &id);
		if (!known)
			continue; /* full, or deleted meanwhile: once more */
		__u32 seen = *known;
		if (seen && slot_owned(slots_map, seen, id))
			return seen;
		/* A stale entry (an exit whose delete lost a race): take it over. */
		if (__sync_val_compare_and_swap(known, seen, slot) == seen)
			return slot;
		seen = *known;
		return slot_owned(slots_map, seen, id) ? seen : 0;
	}
	return 0;
}

/* Starts counting id: claims a free slot (compare-and-swap on its owner, up
 * to 64 tries from a rotating hint), zeroes it and publishes it in the index.
 * Two CPUs registering the same id agree on one slot. For processes, the
 * kernel side (forks, --all) and user space (the register_process program)
 * both come here. Returns the slot, 0 when none could be had (counted). */
static __always_inline __u32 claim_slot(void *slots_map, void *index_map, void *hash_map, __u32 nslots, __u32 *hint,
					__u32 id, __u32 tgid)
{
	__u32 *entry = slot_index_entry(index_map, id);
	if (!entry || !id) {
		count_drop(COWTRACE_DROP_PID_MAP_FULL);
		return 0;
	}
	__u32 current = *entry;
	if (current && slot_owned(slots_map, current, id))
		return current;
	if (cowtrace_cfg.index_mask) {
		__u32 *known = bpf_map_lookup_elem(hash_map, &id);
		__u32 mine = known ? *known : 0;
		if (mine && slot_owned(slots_map, mine, id))
			return mine;
	}
	if (nslots < 2) {
		count_drop(COWTRACE_DROP_PID_MAP_FULL);
		return 0;
	}
	for (int i = 0; i < 64; i++) {
		__u32 slot = __sync_fetch_and_add(hint, 1) % (nslots - 1) + 1;
		struct cowtrace_process_slot *s = bpf_map_lookup_elem(slots_map, &slot);
		if (!s)
			break;
		if (s->id || __sync_val_compare_and_swap(&s->id, 0, id) != 0)
			continue;
		__builtin_memset(&s->counters, 0, sizeof(s->counters));
		s->tgid = tgid;
		if (cowtrace_cfg.index_mask) {
			__u32 got = publish_hashed(slots_map, hash_map, id, slot);
			if (got != slot) {
				s->id = 0;
				if (!got)
					count_drop(COWTRACE_DROP_PID_MAP_FULL);
				return got;
			}
			/* The cache entry: an id it held before finds its slot in
			 * the hash. */
			*entry = slot;
			return slot;
		}
		__u32 seen = __sync_val_compare_and_swap(entry, current, slot);
		if (seen == current)
			return slot;
		/* Another CPU registered id meanwhile: use its slot. */
		s->id = 0;
		return slot_owned(slots_map, seen, id) ? seen : 0;
	}
	count_drop(COWTRACE_DROP_PID_MAP_FULL);
	return 0;
}

/* Stops counting id (it exited): frees its slot. */
static __always_inline void release_slot(void *slots_map, void *index_map, void *hash_map, __u32 id, __u32 slot)
{
	__u32 *entry = slot_index_entry(index_map, id);
	if (entry)
		__sync_val_compare_and_swap(entry, slot, 0);
	if (cowtrace_cfg.index_mask) {
		__u32 *known = bpf_map_lookup_elem(hash_map, &id);
		if (known && *known == slot)
			bpf_map_delete_elem(hash_map, &id);
	}
	struct cowtrace_process_slot *s = bpf_map_lookup_elem(slots_map, &slot);
	if (s)
		__sync_val_compare_and_swap(&s->id, id, 0);
}

static __always_inline __u32 register_tgid(__u32 tgid)
{
	return claim_slot(&process_slots, &pid_slots, &pid_index, cowtrace_cfg.process_slots, &next_slot_hint, tgid, tgid);
}

/* --threads: the counters of the current thread `task` of a traced process,
 * counted from its first write-protect fault on. */
static __always_inline struct cowtrace_pid_counters *thread_counters(struct task_struct *task, __u32 *slot_out)
{
	__u32 tid = task->pid;
	struct cowtrace_process_slot *s = slot_by_id(&thread_slots, &tid_slots, &tid_index, tid, slot_out);
	if (s)
		return &s->counters;
	__u32 slot = claim_slot(&thread_slots, &tid_slots, &tid_index, cowtrace_cfg.thread_slots, &next_thread_slot_hint,
				tid, task->tgid);
	if (!slot)
		return 0;
	s = slot_owned(&thread_slots, slot, tid);
	if (!s)
		return 0;
	bpf_get_current_comm(s->comm, sizeof(s->comm));
	*slot_out = slot;
	return &s->counters;
}

/* --threads: a thread exits: its counters move to exited_threads. */
static __always_inline void thread_exited(struct task_struct *task)
{
	__u32 tid = task->pid, slot = 0;
	struct cowtrace_process_slot *s = slot_by_id(&thread_slots, &tid_slots, &tid_index, tid, &slot);
	if (!s)
		return;
	struct cowtrace_process_slot final = *s;
	BPF_CORE_READ_STR_INTO(&final.comm, task, comm);
	if (bpf_map_update_elem(&exited_threads, &tid, &final, BPF_ANY))
		count_drop(COWTRACE_DROP_PID_MAP_FULL);
	release_slot(&thread_slots, &tid_slots, &tid_index, tid, slot);
}

/* The counters of the process `task` belongs to, or NULL when it is not
 * traced. With trace_all, a process seen for the first time is registered.
 * *slot_out gets the process's slot. */
static __always_inline struct cowtrace_pid_counters *counters_of_slot(struct task_struct *task, __u32 *slot_out)
{
	__u32 tgid = task->tgid;
	struct cowtrace_pid_counters *c = counters_by_tgid(tgid, slot_out);
	if (c || !cowtrace_cfg.trace_all)
		return c;
	__u32 slot = register_tgid(tgid);
	if (!slot)
		return 0;
	struct task_struct *leader = task->group_leader;
	note_identity(tgid, BPF_CORE_READ(leader, real_parent, tgid), leader, false);
	*slot_out = slot;
	return counters_in_slot(slot, tgid);
}

static __always_inline struct cowtrace_pid_counters *counters_of(struct task_struct *task)
{
	__u32 slot;
	return counters_of_slot(task, &slot);
}

static __always_inline struct cowtrace_pid_counters *current_counters(void)
{
	return counters_of(bpf_get_current_task_btf());
}

/* Starts counting a new process (fork of a traced one, or cowtrace -c). */
static __always_inline struct cowtrace_pid_counters *start_counting(struct task_struct *task)
{
	__u32 tgid = task->tgid;
	__u32 slot = register_tgid(tgid);
	return slot ? counters_in_slot(slot, tgid) : 0;
}

/* ---- user space: start counting an existing process ----------------------- */

/* Run by user space (BPF_PROG_TEST_RUN) for -p PID and cgroup members, so
 * that a slot is claimed with the same atomics as in the kernel paths. */
SEC("syscall")
int register_process(struct cowtrace_register_args *args)
{
	args->slot = register_tgid(args->tgid);
	return 0;
}

/* Undoes register_process for a process that exited before its slot was
 * claimed (its exit hook had already run). */
SEC("syscall")
int unregister_process(struct cowtrace_register_args *args)
{
	if (args->slot && counters_in_slot(args->slot, args->tgid))
		release_slot(&process_slots, &pid_slots, &pid_index, args->tgid, args->slot);
	return 0;
}

#endif
