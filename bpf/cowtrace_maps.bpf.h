/* cowtrace_maps.bpf.h: map helpers of bpf/cowtrace.bpf.c: the loss counters,
 * atomic adds and the one lookup-or-init every lazily filled hash uses. */
#ifndef COWTRACE_MAPS_BPF_H
#define COWTRACE_MAPS_BPF_H

/* Loss counters by enum cowtrace_drop_reason: user space sums the CPUs and
 * reports them, so no lost event or full map goes unseen. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COWTRACE_DROP_NR);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

static __always_inline void count_drops(__u32 reason, __u64 lost)
{
	__u64 *n = bpf_map_lookup_elem(&drops, &reason);
	if (n)
		*n += lost;
}

static __always_inline void count_drop(__u32 reason)
{
	count_drops(reason, 1);
}

/* Counters are shared by the threads of a process, which fault on several CPUs. */
#define ADD(field, n) __sync_fetch_and_add(&(field), (n))

/* The value of key in a hash map, inserted as *init if absent. Two CPUs
 * inserting the same key at once both get the one element that won (the
 * loser's BPF_NOEXIST update fails, its second lookup finds it). NULL only
 * when the map is full: counted under `reason`. */
static __always_inline void *lookup_or_try_init(void *map, const void *key, const void *init, __u32 reason)
{
	void *value = bpf_map_lookup_elem(map, key);
	if (value)
		return value;
	long err = bpf_map_update_elem(map, key, init, BPF_NOEXIST);
	value = bpf_map_lookup_elem(map, key);
	if (!value && err)
		count_drop(reason);
	return value;
}

#endif
