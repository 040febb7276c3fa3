/* cowtrace-workload: drives controlled fork/copy-on-write scenarios so that
 * the tracer's numbers can be checked against what was really done.
 *
 *   cowtrace-workload [options] STEP...
 *
 * The parent maps a region, prepares it (--prefault), forks once (unless
 * --no-fork), and then parent and child take turns running the steps in
 * order; the one whose turn it is not waits on a pipe, so the order of
 * writes is exact. Steps:
 *   child:write:FROM:TO    the child writes one byte in pages [FROM, TO)
 *   child:write:FROM:TO:N  the same in every Nth page of them (any write or read step)
 *   parent:write:FROM:TO   the same in the parent
 *   child:twrite:FROM:TO   the same from a new thread named "cw-writer",
 *   parent:twrite:FROM:TO  joined before the next step (per-thread counts)
 *   parent:read:FROM:TO    the parent reads pages (maps them without writing)
 *   child:read:FROM:TO
 *   parent:zwrite:FROM:TO  writes pages of the second region (--zero-pages),
 *   child:zwrite:FROM:TO   which was only read before the fork: zero-page fills
 *   parent:kwrite:FROM:TO  the kernel writes the pages: one read(2) of /dev/zero
 *   child:kwrite:FROM:TO   into them (with a STRIDE, one byte a page), as a read()
 *                          or recv() into a buffer the fork shares does: the
 *                          copies are made in kernel-mode faults
 *   parent:kfile:FROM:TO   the same with read(2) of a file whose page cache
 *   child:kfile:FROM:TO    was dropped first: the read's readahead allocates
 *                          page-cache pages between the faults (--dir)
 *   child:exit             the child exits; the parent reaps it
 *   child:exec             the child execs this program with --noop (fork+exec)
 * Two steps of different sides joined by '+' ("together steps") run at the
 * same time: child:write:0:2048+parent:write:2048:3072 starts both halves
 * once the step before is done, and the step after waits for both. That is
 * the snapshot pattern (Redis BGSAVE): the child works while the parent
 * goes on writing.
 *
 * Frame truth: every write step reads the writer's own /proc/self/pagemap
 * frame numbers for its pages before and after writing. A page whose frame
 * changed was copied (or, in the zero-page region, zero-filled); a page of a
 * private file mapping that was not mapped before and is an anonymous page
 * after was copied from the page cache. This truth comes from the kernel's
 * page tables, not from any tracer; it needs CAP_SYS_ADMIN (frame numbers
 * read as 0 otherwise) and is then reported as null. The child hands its
 * figures to the parent through a pipe when it exits or execs.
 * With --handshake the parent prints "ready PID" once the region is prepared
 * and waits for a byte on stdin before it forks, so a tracer can take a
 * baseline of the program's own start-up faults.
 * --rate MIB_PER_S paces every write step to that speed (a snapshot child
 * that copies at a known rate, for the live forecast's test).
 * --child-oom-score-adj N: the child writes N to /proc/self/oom_score_adj
 * right after the fork, so a memory-cgroup OOM picks it (parent and child
 * have the same rss after a fork; the OOM test wants the child killed).
 * At the end the parent prints one JSON line: pids, page size, region.
 *
 * storm mode (--storm FORKS) is the benchmark's CoW storm: FORKS children,
 * --parallel at a time, each writing every page of the region, then exiting.
 * With --time its JSON line also gives the storm's wall-clock time
 * (CLOCK_MONOTONIC, parent's first write to last child reaped) as
 * "elapsed_ns", and the CPU time parent and children used (user + system) as
 * "cpu_ns", so scripts/bench times the workload, not a tracer's attach and
 * detach. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_STEPS 64
#define MAX_CHILDREN 256

enum mapping { MAP_KIND_ANON, MAP_KIND_SHARED_FILE, MAP_KIND_PRIVATE_FILE };
enum prefault { PREFAULT_WRITE, PREFAULT_READ, PREFAULT_NONE };
enum actor { ACTOR_PARENT, ACTOR_CHILD };
enum action { ACTION_WRITE, ACTION_READ, ACTION_ZERO_WRITE, ACTION_EXIT, ACTION_EXEC, ACTION_THREAD_WRITE, ACTION_KERNEL_WRITE, ACTION_FILE_READ_WRITE };
/* How a step touches its pages: a load, a store, or a read(2) the kernel stores
 * for (from /dev/zero, or from a cold file). */
enum touch_mode { TOUCH_READ, TOUCH_WRITE, TOUCH_KERNEL_WRITE, TOUCH_FILE_READ };

struct step {
	enum actor actor;
	enum action action;
	long from, to;
	long stride; /* every stride-th page of [from, to); 1 unless given */
	/* A together step's other half (the other side's), or NULL. */
	struct step *partner;
};

static struct {
	long pages;
	long zero_pages;
	enum mapping mapping;
	enum prefault prefault;
	int fork;
	int thp;
	int file_nohugepage;
	int handshake;
	int child_oom_score_adj; /* written by the child when child_oom_score_adj_set */
	int child_oom_score_adj_set;
	double write_mib_per_second; /* --rate: writes paced to this speed (0: as fast as it can) */
	int storm_forks;
	int parallel;
	int time_storm;
	const char *file_dir;
	struct step steps[MAX_STEPS];
	struct step partners[MAX_STEPS];
	int nsteps;
} opt = { .pages = 16384, .mapping = MAP_KIND_ANON, .prefault = PREFAULT_WRITE, .fork = 1, .parallel = 2 };

static long page_size;
static volatile unsigned char *region;
static volatile unsigned char *zero_region;
static int region_on_tmpfs;

static void die(const char *what)
{
	fprintf(stderr, "cowtrace-workload: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void usage_error(const char *msg)
{
	fprintf(stderr, "cowtrace-workload: %s (see the comment at the top of main.c or run with --help)\n", msg);
	exit(64);
}

static void usage(void)
{
	puts("usage: cowtrace-workload [--pages N] [--mib N] [--zero-pages N] [--map anon|shared-file|private-file]\n"
	     "                         [--prefault write|read|none] [--no-fork] [--thp] [--file-nohugepage] [--dir DIR] [--handshake]\n"
	     "                         [--child-oom-score-adj N] [--rate MIB_PER_S]\n"
	     "                         [--storm FORKS [--parallel K] [--time]] STEP...\n"
	     "steps: child|parent:write|twrite|kwrite|kfile|read|zwrite:FROM:TO[:STRIDE], child:exit, child:exec\n"
	     "       CHILDSTEP+PARENTSTEP runs both at the same time\n"
	     "example: cowtrace-workload --pages 16384 child:write:0:8192 child:exit parent:write:0:16384\n"
	     "snapshot pattern: cowtrace-workload --pages 4096 child:write:0:2048+parent:write:2048:3072 child:exit");
}

/* pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst). */
#define PM_PFN_MASK ((1ULL << 55) - 1)
#define PM_FILE (1ULL << 61)
#define PM_PRESENT (1ULL << 63)

/* What this process's writes did to its page frames (see the top comment). */
struct frame_truth {
	long written, copied, file_copied, zero_filled;
	int known; /* 0 once pagemap hid the frame numbers (no CAP_SYS_ADMIN) */
};
static struct frame_truth truth = { .known = 1 };
static int pagemap_fd = -1;
static int truth_pipe[2] = { -1, -1 };
static pthread_mutex_t truth_lock = PTHREAD_MUTEX_INITIALIZER;

/* The pagemap entries of pages [from, to) of base, in a fresh mapping the
 * caller unmaps (fresh, so that filling it is a first touch, never a copy
 * the truth would have to explain). NULL when pagemap cannot be read. */
static uint64_t *read_pagemap(volatile unsigned char *base, long from, long to)
{
	if (pagemap_fd < 0)
		pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	size_t len = (size_t)(to - from) * sizeof(uint64_t);
	if (pagemap_fd < 0 || len == 0)
		return NULL;
	uint64_t *entries = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (entries == MAP_FAILED)
		return NULL;
	off_t at = (off_t)(((unsigned long)base / page_size + from) * sizeof(uint64_t));
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(pagemap_fd, (char *)entries + done, len - done, at + done);
		if (n <= 0) {
			munmap(entries, len);
			return NULL;
		}
		done += n;
	}
	return entries;
}

/* Compares a step's pages before and after its writes. */
static void count_frames(const uint64_t *before, const uint64_t *after, long n, long stride, int zero_region_step)
{
	struct frame_truth t = { .known = 1 };
	for (long i = 0; i < n; i += stride) {
		t.written++;
		uint64_t b = before[i], a = after[i];
		if (((b & PM_PRESENT) && !(b & PM_PFN_MASK)) || ((a & PM_PRESENT) && !(a & PM_PFN_MASK)))
			t.known = 0; /* frame numbers hidden: not privileged */
		if (!(a & PM_PRESENT) || (a & PM_FILE))
			continue; /* still a page-cache (or shared) page: nothing copied */
		if (!(b & PM_PRESENT)) {
			/* A first touch: zeroed in anonymous memory, copied from the
			 * page cache in a private file mapping (do_cow_fault). */
			if (opt.mapping == MAP_KIND_PRIVATE_FILE && !zero_region_step)
				t.file_copied++;
		} else if (b & PM_FILE) {
			t.file_copied++; /* page-cache page replaced by a private copy */
		} else if ((b & PM_PFN_MASK) != (a & PM_PFN_MASK)) {
			if (zero_region_step)
				t.zero_filled++;
			else
				t.copied++;
		}
	}
	pthread_mutex_lock(&truth_lock);
	truth.written += t.written;
	truth.copied += t.copied;
	truth.file_copied += t.file_copied;
	truth.zero_filled += t.zero_filled;
	truth.known &= t.known;
	pthread_mutex_unlock(&truth_lock);
}

/* The file kfile steps read: as large as the region, on --dir (default
 * /var/tmp, a disk file system: on tmpfs nothing is read ahead), written and
 * synced before the fork, so that making it copies no page of the steps. */
static int kfile_fd = -1;

static void make_cold_file(void)
{
	char path[4096];
	const char *dir = opt.file_dir ? opt.file_dir : access("/var/tmp", W_OK) == 0 ? "/var/tmp" : "/tmp";
	snprintf(path, sizeof(path), "%s/cowtrace-workload-read.XXXXXX", dir);
	if ((kfile_fd = mkstemp(path)) < 0)
		die("create the file kfile steps read (use --dir to pick a writable directory)");
	unlink(path);
	size_t chunk = 1u << 20;
	char *buf = malloc(chunk);
	if (!buf)
		die("allocate the fill buffer");
	memset(buf, 0x3c, chunk);
	for (long off = 0; off < opt.pages * page_size; off += (long)chunk) {
		size_t n = opt.pages * page_size - off < (long)chunk ? (size_t)(opt.pages * page_size - off) : chunk;
		if (pwrite(kfile_fd, buf, n, off) != (ssize_t)n)
			die("fill the file kfile steps read");
	}
	free(buf);
	if (fsync(kfile_fd))
		die("fsync the file kfile steps read");
}

/* The file, its page cache dropped: clean pages only (synced, never written since). */
static int cold_file(void)
{
	if (posix_fadvise(kfile_fd, 0, 0, POSIX_FADV_DONTNEED))
		die("drop the page cache of the file kfile steps read");
	return kfile_fd;
}

/* TOUCH_KERNEL_WRITE, TOUCH_FILE_READ: read(2) writes the pages, in kernel
 * mode (one read of the whole range, or one byte a page with a stride). */
static void kernel_write(volatile unsigned char *base, long from, long to, long stride, enum touch_mode mode)
{
	static int zero_fd = -1;
	int fd;
	if (mode == TOUCH_FILE_READ) {
		fd = cold_file();
	} else {
		if (zero_fd < 0 && (zero_fd = open("/dev/zero", O_RDONLY | O_CLOEXEC)) < 0)
			die("open /dev/zero");
		fd = zero_fd;
	}
	for (long i = from; i < to; i += stride) {
		char *p = (char *)(base + i * page_size);
		size_t left = stride == 1 ? (size_t)(to - from) * page_size : 1;
		off_t at = (off_t)i * page_size;
		while (left) {
			ssize_t n = pread(fd, p, left, at);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				die(mode == TOUCH_FILE_READ ? "read the file into the region" : "read /dev/zero into the region");
			p += n;
			at += n;
			left -= (size_t)n;
		}
		if (stride == 1)
			break;
	}
}

/* Loads or stores one byte a page, paced by --rate (never inlined: stacks
 * name it as the writer, HistCLITests). */
__attribute__((noinline)) static void user_touch(volatile unsigned char *base, long from, long to, long stride, int write)
{
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (long i = from; i < to; i += stride) {
		volatile unsigned char *p = base + i * page_size;
		if (write)
			*p = (unsigned char)(i + 1);
		else
			(void)*p;
		/* --rate: every 64 pages, sleep until the pace allows the next ones. */
		if (write && opt.write_mib_per_second > 0 && ((i - from) / stride) % 64 == 63) {
			double due = (double)((i - from) / stride + 1) * page_size / (opt.write_mib_per_second * 1048576.0);
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			double ahead = due - ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9);
			if (ahead > 0) {
				struct timespec pause = { (time_t)ahead, (long)((ahead - (time_t)ahead) * 1e9) };
				nanosleep(&pause, NULL);
			}
		}
	}
}

static void touch_region(volatile unsigned char *base, long pages, long from, long to, long stride, enum touch_mode mode)
{
	if (from < 0 || to > pages || from > to)
		usage_error("step range outside the region");
	if (stride < 1)
		stride = 1;
	int write = mode != TOUCH_READ;
	uint64_t *before = write ? read_pagemap(base, from, to) : NULL;
	if (write && !before)
		truth.known = 0;
	if (mode == TOUCH_KERNEL_WRITE || mode == TOUCH_FILE_READ)
		kernel_write(base, from, to, stride, mode);
	else
		user_touch(base, from, to, stride, write);
	if (!before)
		return;
	uint64_t *after = read_pagemap(base, from, to);
	if (after) {
		count_frames(before, after, to - from, stride, base == zero_region);
		munmap(after, (size_t)(to - from) * sizeof(uint64_t));
	} else {
		truth.known = 0;
	}
	munmap(before, (size_t)(to - from) * sizeof(uint64_t));
}

/* Unmeasured writes (the storm, preparing the region before the fork). */
static void touch_plain(volatile unsigned char *base, long from, long to, int write)
{
	for (long i = from; i < to; i++) {
		volatile unsigned char *p = base + i * page_size;
		if (write)
			*p = (unsigned char)(i + 1);
		else
			(void)*p;
	}
}

static void touch(const struct step *st, enum touch_mode mode)
{
	touch_region(region, opt.pages, st->from, st->to, st->stride, mode);
}

static void *thread_write(void *arg)
{
	struct step *st = arg;
	touch(st, TOUCH_WRITE);
	return NULL;
}

/* Writes the step's pages from a new thread named "cw-writer" and waits for it. */
static void touch_from_thread(struct step *st)
{
	pthread_t thread;
	int err = pthread_create(&thread, NULL, thread_write, st);
	if (err) {
		errno = err;
		die("pthread_create");
	}
	pthread_setname_np(thread, "cw-writer");
	pthread_join(thread, NULL);
}

/* The child hands its frame truth to the parent, once, before it exits or execs. */
static void send_truth(void)
{
	if (truth_pipe[1] < 0)
		return;
	if (write(truth_pipe[1], &truth, sizeof(truth)) != (ssize_t)sizeof(truth))
		truth.known = 0;
	close(truth_pipe[1]);
	truth_pipe[1] = -1;
}

static void print_truth(const char *name, const struct frame_truth *t)
{
	printf("\"%s\":{\"written\":%ld,\"copied\":%ld,\"file_copied\":%ld,\"zero_filled\":%ld}", name,
	       t->written, t->copied, t->file_copied, t->zero_filled);
}

/* A second anonymous region that is only read before the fork, so the shared
 * zero page is mapped in it: its first writes are zero fills, not copies. */
static void map_zero_region(void)
{
	size_t len = (size_t)opt.zero_pages * page_size;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap the zero-page region");
	madvise(p, len, MADV_NOHUGEPAGE);
	zero_region = p;
	touch_plain(zero_region, 0, opt.zero_pages, 0);
	/* One real write gives the VMA an anon_vma: without one, fork copies no
	 * page-table entries for it, and the child's writes would be first
	 * touches instead of zero fills. Page zero_pages-1 is left out of steps. */
	touch_plain(zero_region, opt.zero_pages - 1, opt.zero_pages, 1);
}

static void map_region(void)
{
	size_t len = (size_t)opt.pages * page_size;
	if (opt.mapping == MAP_KIND_ANON) {
		/* Over-allocate to align on 2 MiB, so --thp can get huge pages. */
		size_t align = 2u << 20;
		unsigned char *raw = mmap(NULL, len + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (raw == MAP_FAILED)
			die("mmap anonymous region");
		unsigned char *aligned = (unsigned char *)(((unsigned long)raw + align - 1) & ~(align - 1));
		region = aligned;
		/* THP off unless asked: a huge page changes what a write copies. */
		if (madvise((void *)region, len, opt.thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) && opt.thp)
			die("madvise MADV_HUGEPAGE");
		return;
	}
	/* /var/tmp is usually a disk file system (dirty tracking: shared writes
	 * fault); fall back to /tmp where it does not exist (initramfs). */
	if (!opt.file_dir)
		opt.file_dir = access("/var/tmp", W_OK) == 0 ? "/var/tmp" : "/tmp";
	char path[4096];
	snprintf(path, sizeof(path), "%s/cowtrace-workload.XXXXXX", opt.file_dir);
	int fd = mkstemp(path);
	if (fd < 0)
		die("create the backing file (use --dir to pick a writable directory)");
	unlink(path);
	if (ftruncate(fd, (off_t)len))
		die("size the backing file");
	/* Put real data in the page cache, so reads map file pages, not holes.
	 * Written 2 MiB at a time, as cp or a database would: the page cache
	 * then keeps large folios where the file system makes them (ext4 on
	 * 6.18), and a read fault maps many pages at once. */
	size_t chunk = len < (2u << 20) ? len : (2u << 20);
	char *buf = malloc(chunk);
	if (!buf)
		die("allocate the fill buffer");
	memset(buf, 0x5a, chunk);
	for (size_t off = 0; off < len; off += chunk) {
		size_t n = len - off < chunk ? len - off : chunk;
		if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n)
			die("fill the backing file");
	}
	free(buf);
	struct statfs fs;
	if (fstatfs(fd, &fs) == 0)
		region_on_tmpfs = fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC;
	int flags = opt.mapping == MAP_KIND_SHARED_FILE ? MAP_SHARED : MAP_PRIVATE;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, 0);
	if (p == MAP_FAILED)
		die("mmap the backing file");
	close(fd);
	region = p;
	/* Only when asked (--file-nohugepage): without it, page-cache large
	 * folios map many pages per read fault, as in real programs. */
	if (opt.file_nohugepage && madvise(p, len, MADV_NOHUGEPAGE))
		die("madvise MADV_NOHUGEPAGE on the file mapping");
}

static void parse_half(const char *s, struct step *st)
{
	char who[16], what[16];
	long from = 0, to = 0, stride = 1;
	int n = sscanf(s, "%15[a-z]:%15[a-z]:%ld:%ld:%ld", who, what, &from, &to, &stride);
	if (n < 2)
		usage_error("a step looks like child:write:FROM:TO");
	if (!strcmp(who, "child"))
		st->actor = ACTOR_CHILD;
	else if (!strcmp(who, "parent"))
		st->actor = ACTOR_PARENT;
	else
		usage_error("a step's actor is child or parent");
	if (!strcmp(what, "write") || !strcmp(what, "read") || !strcmp(what, "zwrite") || !strcmp(what, "twrite") ||
	    !strcmp(what, "kwrite") || !strcmp(what, "kfile")) {
		if (n != 4 && n != 5)
			usage_error("write and read steps need FROM:TO page numbers (and an optional :STRIDE)");
		if (stride < 1)
			usage_error("a step's STRIDE must be at least 1");
		st->action = what[0] == 'w' ? ACTION_WRITE : what[0] == 'z' ? ACTION_ZERO_WRITE
			   : what[0] == 't' ? ACTION_THREAD_WRITE : !strcmp(what, "kwrite") ? ACTION_KERNEL_WRITE
			   : !strcmp(what, "kfile") ? ACTION_FILE_READ_WRITE : ACTION_READ;
	} else if (!strcmp(what, "exit") && st->actor == ACTOR_CHILD) {
		st->action = ACTION_EXIT;
	} else if (!strcmp(what, "exec") && st->actor == ACTOR_CHILD) {
		st->action = ACTION_EXEC;
	} else {
		usage_error("unknown step action (write, twrite, kwrite, kfile, read, zwrite, child:exit, child:exec)");
	}
	st->from = from;
	st->to = to;
	st->stride = stride;
	st->partner = NULL;
}

static void parse_step(const char *s)
{
	if (opt.nsteps == MAX_STEPS)
		usage_error("too many steps");
	int i = opt.nsteps++;
	struct step *st = &opt.steps[i];
	const char *plus = strchr(s, '+');
	if (!plus) {
		parse_half(s, st);
		return;
	}
	char first[64];
	if ((size_t)(plus - s) >= sizeof(first))
		usage_error("a together step's half is too long");
	memcpy(first, s, plus - s);
	first[plus - s] = 0;
	parse_half(first, st);
	parse_half(plus + 1, &opt.partners[i]);
	if (strchr(plus + 1, '+') || opt.partners[i].actor == st->actor)
		usage_error("a together step joins one child step and one parent step with '+'");
	if (st->action == ACTION_EXIT || st->action == ACTION_EXEC || opt.partners[i].action == ACTION_EXIT ||
	    opt.partners[i].action == ACTION_EXEC)
		usage_error("child:exit and child:exec cannot be half of a together step (put them after it)");
	st->partner = &opt.partners[i];
}

/* Does side is_child run (a half of) step st? */
static int involves(const struct step *st, int is_child)
{
	return ((st->actor == ACTOR_CHILD) == is_child) ||
	       (st->partner && ((st->partner->actor == ACTOR_CHILD) == is_child));
}

/* The half of st that side is_child runs. */
static struct step *half_of(struct step *st, int is_child)
{
	return ((st->actor == ACTOR_CHILD) == is_child) ? st : st->partner;
}

static void pass_turn(int fd)
{
	char token = 't';
	while (write(fd, &token, 1) < 0)
		if (errno != EINTR)
			die("pass the turn");
}

static int wait_turn(int fd)
{
	char token;
	ssize_t n;
	while ((n = read(fd, &token, 1)) < 0)
		if (errno != EINTR)
			die("wait for the turn");
	return n == 1;
}

static long long monotonic_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts))
		die("clock_gettime");
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long rusage_ns(int who)
{
	struct rusage ru;
	if (getrusage(who, &ru))
		die("getrusage");
	return ((long long)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
	       ((long long)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

static int storm(void)
{
	pid_t running[MAX_CHILDREN];
	int nrunning = 0;
	long long start_ns = monotonic_ns();
	long long start_cpu_ns = rusage_ns(RUSAGE_SELF);
	touch_plain(region, 0, opt.pages, 1);
	for (int i = 0; i < opt.storm_forks; i++) {
		if (nrunning == opt.parallel) {
			if (wait(NULL) < 0)
				die("wait for a storm child");
			nrunning--;
		}
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			touch_plain(region, 0, opt.pages, 1);
			_exit(0);
		}
		running[nrunning++] = pid;
	}
	while (wait(NULL) > 0)
		;
	long long elapsed_ns = monotonic_ns() - start_ns;
	long long cpu_ns = rusage_ns(RUSAGE_SELF) - start_cpu_ns + rusage_ns(RUSAGE_CHILDREN);
	(void)running;
	printf("{\"workload\":\"storm\",\"parent\":%d,\"forks\":%d,\"pages\":%ld,\"page_size\":%ld",
	       getpid(), opt.storm_forks, opt.pages, page_size);
	if (opt.time_storm)
		printf(",\"elapsed_ns\":%lld,\"cpu_ns\":%lld", elapsed_ns, cpu_ns);
	printf("}\n");
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "pages", required_argument, 0, 'p' }, { "zero-pages", required_argument, 0, 'Z' }, { "mib", required_argument, 0, 'm' },
		{ "map", required_argument, 0, 'k' },   { "prefault", required_argument, 0, 'f' },
		{ "no-fork", no_argument, 0, 'n' },     { "thp", no_argument, 0, 't' },
		{ "file-nohugepage", no_argument, 0, 'N' },
		{ "dir", required_argument, 0, 'd' },   { "storm", required_argument, 0, 's' },
		{ "parallel", required_argument, 0, 'j' }, { "noop", no_argument, 0, 'z' }, { "handshake", no_argument, 0, 'H' },
		{ "time", no_argument, 0, 'T' },        { "child-oom-score-adj", required_argument, 0, 'O' },
		{ "rate", required_argument, 0, 'R' },
		{ "help", no_argument, 0, 'h' },        { 0, 0, 0, 0 },
	};
	page_size = sysconf(_SC_PAGESIZE);
	int c;
	while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': opt.pages = atol(optarg); break;
		case 'Z': opt.zero_pages = atol(optarg); break;
		case 'm': opt.pages = atol(optarg) * (1L << 20) / page_size; break;
		case 'k':
			if (!strcmp(optarg, "anon")) opt.mapping = MAP_KIND_ANON;
			else if (!strcmp(optarg, "shared-file")) opt.mapping = MAP_KIND_SHARED_FILE;
			else if (!strcmp(optarg, "private-file")) opt.mapping = MAP_KIND_PRIVATE_FILE;
			else usage_error("--map is anon, shared-file or private-file");
			break;
		case 'f':
			if (!strcmp(optarg, "write")) opt.prefault = PREFAULT_WRITE;
			else if (!strcmp(optarg, "read")) opt.prefault = PREFAULT_READ;
			else if (!strcmp(optarg, "none")) opt.prefault = PREFAULT_NONE;
			else usage_error("--prefault is write, read or none");
			break;
		case 'n': opt.fork = 0; break;
		case 'H': opt.handshake = 1; break;
		case 't': opt.thp = 1; break;
		case 'N': opt.file_nohugepage = 1; break;
		case 'd': opt.file_dir = optarg; break;
		case 's': opt.storm_forks = atoi(optarg); break;
		case 'j': opt.parallel = atoi(optarg); break;
		case 'T': opt.time_storm = 1; break;
		case 'O':
			opt.child_oom_score_adj = atoi(optarg);
			opt.child_oom_score_adj_set = 1;
			if (opt.child_oom_score_adj < -1000 || opt.child_oom_score_adj > 1000)
				usage_error("--child-oom-score-adj must be -1000..1000");
			break;
		case 'R':
			opt.write_mib_per_second = atof(optarg);
			if (!(opt.write_mib_per_second > 0))
				usage_error("--rate wants MiB per second above 0");
			break;
		case 'z': return 0; /* the image a child:exec step runs */
		case 'h': usage(); return 0;
		default: usage_error("unknown option");
		}
	}
	if (opt.pages <= 0)
		usage_error("--pages must be positive");
	if (opt.parallel < 1 || opt.parallel > MAX_CHILDREN)
		usage_error("--parallel must be 1..256");
	for (int i = optind; i < argc; i++)
		parse_step(argv[i]);
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* A page this program surely has mapped: its frame number reads as 0
	 * without CAP_SYS_ADMIN, and then there is no frame truth. */
	uint64_t *own = read_pagemap((volatile unsigned char *)((unsigned long)&page_size & ~(page_size - 1)), 0, 1);
	if (!own || !(own[0] & PM_PFN_MASK))
		truth.known = 0;
	if (own)
		munmap(own, sizeof(uint64_t));

	map_region();
	if (opt.zero_pages > 0)
		map_zero_region();
	if (opt.storm_forks > 0)
		return storm();
	if (opt.prefault != PREFAULT_NONE)
		touch_plain(region, 0, opt.pages, opt.prefault == PREFAULT_WRITE);
	for (int i = 0; i < opt.nsteps; i++)
		if (opt.steps[i].action == ACTION_FILE_READ_WRITE || (opt.steps[i].partner && opt.steps[i].partner->action == ACTION_FILE_READ_WRITE)) {
			make_cold_file();
			break;
		}
	if (opt.handshake) {
		/* A tracer reads its baseline now (this program's own start-up
		 * faults), then lets the scenario run by writing one byte. */
		printf("ready %d\n", getpid());
		char go;
		if (read(0, &go, 1) != 1)
			usage_error("--handshake: standard input closed before the go byte");
	}

	int to_child[2], to_parent[2];
	pid_t child = 0;
	if (opt.fork) {
		if (pipe(to_child) || pipe(to_parent) || pipe2(truth_pipe, O_CLOEXEC))
			die("pipe");
		child = fork();
		if (child < 0)
			die("fork");
		/* Each side keeps only its ends, so closing one shows as EOF to the other. */
		close(child == 0 ? to_child[1] : to_child[0]);
		close(child == 0 ? to_parent[0] : to_parent[1]);
		close(child == 0 ? truth_pipe[0] : truth_pipe[1]);
		if (child == 0) {
			truth_pipe[0] = -1;
			/* The parent's open pagemap describes the parent's pages. */
			if (pagemap_fd >= 0)
				close(pagemap_fd);
			pagemap_fd = -1;
		} else {
			truth_pipe[1] = -1;
		}
		if (child == 0 && opt.child_oom_score_adj_set) {
			char adj[16];
			int fd = open("/proc/self/oom_score_adj", O_WRONLY);
			int len = snprintf(adj, sizeof(adj), "%d", opt.child_oom_score_adj);
			if (fd < 0 || write(fd, adj, len) != len)
				die("write /proc/self/oom_score_adj");
			close(fd);
		}
	}
	int is_child = opt.fork && child == 0;
	int child_alive = opt.fork;
	int child_status = -1;
	for (int i = 0; i < opt.nsteps; i++) {
		struct step *st = &opt.steps[i];
		if (!opt.fork && involves(st, 1))
			usage_error("a child step needs a fork (drop --no-fork)");
		if (!involves(st, is_child))
			continue;
		/* Wait for the other side when the previous step was (half) theirs. */
		if (i > 0 && involves(&opt.steps[i - 1], !is_child)) {
			struct step *prev = &opt.steps[i - 1];
			if (is_child) {
				if (!wait_turn(to_child[0])) {
					send_truth();
					_exit(0);
				}
			} else if (prev->action == ACTION_EXIT || prev->action == ACTION_EXEC) {
				if (child_alive && waitpid(child, &child_status, 0) < 0)
					die("wait for the child");
				child_alive = 0;
			} else if (child_alive) {
				wait_turn(to_parent[0]);
			}
		}
		struct step *mine = half_of(st, is_child);
		switch (mine->action) {
		case ACTION_WRITE: touch(mine, TOUCH_WRITE); break;
		case ACTION_KERNEL_WRITE: touch(mine, TOUCH_KERNEL_WRITE); break;
		case ACTION_FILE_READ_WRITE: touch(mine, TOUCH_FILE_READ); break;
		case ACTION_THREAD_WRITE: touch_from_thread(mine); break;
		case ACTION_READ: touch(mine, TOUCH_READ); break;
		case ACTION_ZERO_WRITE: touch_region(zero_region, opt.zero_pages, mine->from, mine->to, mine->stride, TOUCH_WRITE); break;
		case ACTION_EXIT: send_truth(); _exit(0);
		case ACTION_EXEC: {
			char self[4096];
			ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
			if (n < 0)
				_exit(3);
			self[n] = 0;
			send_truth();
			execl(self, "cowtrace-workload", "--noop", (char *)NULL);
			_exit(3);
		}
		}
		/* Hand the turn over when the next step is (half) the other side's. */
		if (opt.fork && i + 1 < opt.nsteps && involves(&opt.steps[i + 1], !is_child) &&
		    (is_child || child_alive))
			pass_turn(is_child ? to_parent[1] : to_child[1]);
	}
	if (is_child) {
		send_truth();
		/* Stay alive (and keep sharing pages) until the parent is done. */
		while (wait_turn(to_child[0]))
			;
		_exit(0);
	}
	if (child_alive) {
		close(to_child[1]);
		if (waitpid(child, &child_status, 0) < 0)
			die("wait for the child");
	}
	struct frame_truth child_truth = { 0 };
	int child_truth_known = opt.fork && read(truth_pipe[0], &child_truth, sizeof(child_truth)) == (ssize_t)sizeof(child_truth) &&
				child_truth.known;
	printf("{\"workload\":\"steps\",\"parent\":%d,\"child\":%d,\"pages\":%ld,\"page_size\":%ld,\"region_on_tmpfs\":%s,",
	       getpid(), (int)child, opt.pages, page_size, region_on_tmpfs ? "true" : "false");
	/* How the child ended, as waitpid(2) gave it (null: no fork or not waited for). */
	if (child_status >= 0)
		printf("\"child_status\":%d,", child_status);
	else
		printf("\"child_status\":null,");
	printf("\"frames\":");
	if (truth.known) {
		printf("{");
		print_truth("parent", &truth);
		if (child_truth_known) {
			printf(",");
			print_truth("child", &child_truth);
		} else {
			printf(",\"child\":null");
		}
		printf("}");
	} else {
		printf("null");
	}
	printf("}\n");
	return 0;
}
