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
 *   parent:write:FROM:TO   the same in the parent
 *   child:twrite:FROM:TO   the same from a new thread named "cw-writer",
 *   parent:twrite:FROM:TO  joined before the next step (per-thread counts)
 *   parent:read:FROM:TO    the parent reads pages (maps them without writing)
 *   child:read:FROM:TO
 *   parent:zwrite:FROM:TO  writes pages of the second region (--zero-pages),
 *   child:zwrite:FROM:TO   which was only read before the fork: zero-page fills
 *   child:exit             the child exits; the parent reaps it
 *   child:exec             the child execs this program with --noop (fork+exec)
 * With --handshake the parent prints "ready PID" once the region is prepared
 * and waits for a byte on stdin before it forks, so a tracer can take a
 * baseline of the program's own start-up faults.
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
enum action { ACTION_WRITE, ACTION_READ, ACTION_ZERO_WRITE, ACTION_EXIT, ACTION_EXEC, ACTION_THREAD_WRITE };

struct step {
	enum actor actor;
	enum action action;
	long from, to;
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
	int storm_forks;
	int parallel;
	int time_storm;
	const char *file_dir;
	struct step steps[MAX_STEPS];
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
	     "                         [--child-oom-score-adj N]\n"
	     "                         [--storm FORKS [--parallel K] [--time]] STEP...\n"
	     "steps: child|parent:write|twrite|read|zwrite:FROM:TO, child:exit, child:exec\n"
	     "example: cowtrace-workload --pages 16384 child:write:0:8192 child:exit parent:write:0:16384");
}

static void touch_region(volatile unsigned char *base, long pages, long from, long to, int write)
{
	if (from < 0 || to > pages || from > to)
		usage_error("step range outside the region");
	for (long i = from; i < to; i++) {
		volatile unsigned char *p = base + i * page_size;
		if (write)
			*p = (unsigned char)(i + 1);
		else
			(void)*p;
	}
}

static void touch(long from, long to, int write)
{
	touch_region(region, opt.pages, from, to, write);
}

static void *thread_write(void *arg)
{
	struct step *st = arg;
	touch(st->from, st->to, 1);
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
	touch_region(zero_region, opt.zero_pages, 0, opt.zero_pages, 0);
	/* One real write gives the VMA an anon_vma: without one, fork copies no
	 * page-table entries for it, and the child's writes would be first
	 * touches instead of zero fills. Page zero_pages-1 is left out of steps. */
	touch_region(zero_region, opt.zero_pages, opt.zero_pages - 1, opt.zero_pages, 1);
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

static void parse_step(const char *s)
{
	if (opt.nsteps == MAX_STEPS)
		usage_error("too many steps");
	struct step *st = &opt.steps[opt.nsteps++];
	char who[16], what[16];
	long from = 0, to = 0;
	int n = sscanf(s, "%15[a-z]:%15[a-z]:%ld:%ld", who, what, &from, &to);
	if (n < 2)
		usage_error("a step looks like child:write:FROM:TO");
	if (!strcmp(who, "child"))
		st->actor = ACTOR_CHILD;
	else if (!strcmp(who, "parent"))
		st->actor = ACTOR_PARENT;
	else
		usage_error("a step's actor is child or parent");
	if (!strcmp(what, "write") || !strcmp(what, "read") || !strcmp(what, "zwrite") || !strcmp(what, "twrite")) {
		if (n != 4)
			usage_error("write and read steps need FROM:TO page numbers");
		st->action = what[0] == 'w' ? ACTION_WRITE : what[0] == 'z' ? ACTION_ZERO_WRITE
			   : what[0] == 't' ? ACTION_THREAD_WRITE : ACTION_READ;
	} else if (!strcmp(what, "exit") && st->actor == ACTOR_CHILD) {
		st->action = ACTION_EXIT;
	} else if (!strcmp(what, "exec") && st->actor == ACTOR_CHILD) {
		st->action = ACTION_EXEC;
	} else {
		usage_error("unknown step action (write, twrite, read, zwrite, child:exit, child:exec)");
	}
	st->from = from;
	st->to = to;
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
	touch(0, opt.pages, 1);
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
			touch(0, opt.pages, 1);
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

	map_region();
	if (opt.zero_pages > 0)
		map_zero_region();
	if (opt.storm_forks > 0)
		return storm();
	if (opt.prefault != PREFAULT_NONE)
		touch(0, opt.pages, opt.prefault == PREFAULT_WRITE);
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
		if (pipe(to_child) || pipe(to_parent))
			die("pipe");
		child = fork();
		if (child < 0)
			die("fork");
		/* Each side keeps only its ends, so closing one shows as EOF to the other. */
		close(child == 0 ? to_child[1] : to_child[0]);
		close(child == 0 ? to_parent[0] : to_parent[1]);
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
	for (int i = 0; i < opt.nsteps; i++) {
		struct step *st = &opt.steps[i];
		if (!opt.fork && st->actor == ACTOR_CHILD)
			usage_error("a child step needs a fork (drop --no-fork)");
		int mine = (st->actor == ACTOR_CHILD) == is_child;
		if (!mine)
			continue;
		/* Take the turn from the other side when the previous step was theirs. */
		if (i > 0 && ((opt.steps[i - 1].actor == ACTOR_CHILD) != is_child)) {
			struct step *prev = &opt.steps[i - 1];
			if (is_child) {
				if (!wait_turn(to_child[0]))
					_exit(0);
			} else if (prev->action == ACTION_EXIT || prev->action == ACTION_EXEC) {
				if (child_alive && waitpid(child, NULL, 0) < 0)
					die("wait for the child");
				child_alive = 0;
			} else if (child_alive) {
				wait_turn(to_parent[0]);
			}
		}
		switch (st->action) {
		case ACTION_WRITE: touch(st->from, st->to, 1); break;
		case ACTION_THREAD_WRITE: touch_from_thread(st); break;
		case ACTION_READ: touch(st->from, st->to, 0); break;
		case ACTION_ZERO_WRITE: touch_region(zero_region, opt.zero_pages, st->from, st->to, 1); break;
		case ACTION_EXIT: _exit(0);
		case ACTION_EXEC: {
			char self[4096];
			ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
			if (n < 0)
				_exit(3);
			self[n] = 0;
			execl(self, "cowtrace-workload", "--noop", (char *)NULL);
			_exit(3);
		}
		}
		/* Hand the turn over when the next step is the other side's. */
		if (opt.fork && i + 1 < opt.nsteps && ((opt.steps[i + 1].actor == ACTOR_CHILD) != is_child))
			pass_turn(is_child ? to_parent[1] : to_child[1]);
	}
	if (is_child) {
		/* Stay alive (and keep sharing pages) until the parent is done. */
		while (wait_turn(to_child[0]))
			;
		_exit(0);
	}
	if (child_alive) {
		close(to_child[1]);
		if (waitpid(child, NULL, 0) < 0)
			die("wait for the child");
	}
	printf("{\"workload\":\"steps\",\"parent\":%d,\"child\":%d,\"pages\":%ld,\"page_size\":%ld,\"region_on_tmpfs\":%s}\n",
	       getpid(), (int)child, opt.pages, page_size, region_on_tmpfs ? "true" : "false");
	return 0;
}
