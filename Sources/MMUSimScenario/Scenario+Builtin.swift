import MMUSim
/// The built-in scenarios, written in the same YAML schema as user files
/// (docs/simulate.md), so `cowtrace simulate --show NAME` prints a starting point.
extension Scenario {
    public static let builtinSources: [(name: String, yaml: String)] = [
        ("fork-exec", forkExec),
        ("child-writes-10-pages", childWrites10Pages),
        ("redis-bgsave", redisBGSave),
        ("oom-8g", oom8G(mode: "0", extraMachine: "", tail: oomTail)),
        ("oom-8g-always", oom8G(mode: "1", extraMachine: "", tail: oomTail)),
        ("oom-8g-never", oom8G(mode: "2", extraMachine: "\n  overcommit_ratio: 100", tail: oomNeverTail)),
        ("oom-8g-adj", oom8GAdj),
        ("oom-8g-protected", oom8GProtected),
        ("increment", increment),
        ("memcg-fork", memcgFork),
    ]

    public static var builtinNames: [String] { builtinSources.map(\.name) }

    /// The YAML of a built-in scenario.
    public static func builtinSource(named name: String) -> String? {
        builtinSources.first { $0.name == name }?.yaml
    }

    public static func builtin(named name: String) throws -> Scenario? {
        guard let yaml = builtinSource(named: name) else { return nil }
        return try parse(yaml, file: "builtin:\(name)")
    }

    static let forkExec = """
    name: fork-exec
    description: "A 2 GiB process forks and the child at once execs a 1 MiB program: CoW copies nothing."
    machine:
      ram: 8GiB
    steps:
      - spawn: shell
        pid: 1000
      - mmap: heap
        process: shell
        size: 2GiB
      - write: heap
        process: shell
        note: the parent has touched all 2 GiB
      - fork: shell
        child: child
        pid: 1001
        note: page tables copied and write-protected; no page copied
      - exec: child
        comm: tool
        note: the child's view of the 2 GiB is dropped
      - mmap: image
        process: child
        size: 1MiB
      - write: image
        process: child
      - exit: child
      - write: heap
        process: shell
        note: alone again, the parent reuses every page (write-protect faults, no copy)
    expect:
      - copies: {process: child, equals: 0}
      - copies: {process: shell, equals: 0}
    """

    static let childWrites10Pages = """
    name: child-writes-10-pages
    description: "A 1 GiB process forks and the child writes 10 pages: 10 pages (40 KiB) are copied, the rest stays shared."
    machine:
      ram: 8GiB
    steps:
      - spawn: parent
        pid: 1000
      - mmap: data
        process: parent
        size: 1GiB
      - write: data
        process: parent
      - fork: parent
        child: child
        pid: 1001
      - write: data
        process: child
        length: 10 pages
        note: each write-protect fault copies one 4 KiB page
      - read: data
        process: child
        note: reading the rest faults nothing
      - exit: child
    expect:
      - copies: {process: child, equals: 10}
      - copies: {process: parent, equals: 0}
    """

    static let redisBGSave = """
    name: redis-bgsave
    description: "Redis saves a 10 GiB dataset from a forked child while the parent modifies 5 % of it: 512 MiB is copied."
    machine:
      ram: 16GiB
    steps:
      - spawn: redis-server
        pid: 1000
      - mmap: dataset
        process: redis-server
        size: 10GiB
      - write: dataset
        process: redis-server
        note: DEBUG POPULATE
      - fork: redis-server
        child: bgsave
        pid: 1001
        note: BGSAVE; latest_fork_usec is the time to copy the page tables
      - read: dataset
        process: bgsave
        note: the child serialises the snapshot; reads share every page
      - write: dataset
        process: redis-server
        every: 20
        note: clients modify 5 % of the keys in place; each first write copies a page
      - exit: bgsave
        note: rdb_last_cow_size is the child's Private_Dirty just before this
    expect:
      - copies: {process: redis-server, equals: 131072}
      - copies: {process: bgsave, equals: 0}
    """

    static func oom8G(mode: String, extraMachine: String, tail: String) -> String {
        let explain: String
        switch mode {
        case "1": explain = "overcommit_memory 1 never refuses, so the fork succeeds and the OOM killer kills the child."
        case "2": explain = "overcommit_memory 2 (ratio 100) refuses the fork with ENOMEM; nobody is killed."
        default: explain = "overcommit_memory 0 lets the fork through (each VMA < RAM) and the OOM killer kills the child."
        }
        return """
        name: oom-8g\(mode == "1" ? "-always" : mode == "2" ? "-never" : "")
        description: "An 8 GiB host; a 6 GiB process forks and the child writes 3 GiB: \(explain)"
        machine:
          ram: 8GiB
          overcommit: \(mode)\(extraMachine)
        steps:
          - spawn: app
            pid: 1000
          - mmap: heap
            process: app
            size: 6GiB
          - write: heap
            process: app
          - fork: app
            child: child
            pid: 1001
          - write: heap
            process: child
            length: 3GiB
            note: only about 2 GiB is free
        \(tail)
        """
    }

    static let oomTail = """
    expect:
      - killed: child
      - alive: app
      - oom_kills: 1
      - failed_steps: 1
    """

    static let oomNeverTail = """
    expect:
      - alive: app
      - oom_kills: 0
      - failed_steps: 2
    """

    static let oom8GAdj = """
    name: oom-8g-adj
    description: "As oom-8g, but the child sets oom_score_adj -100 first: the parent is killed, and the child then reuses the pages it no longer shares."
    machine:
      ram: 8GiB
    steps:
      - spawn: app
        pid: 1000
      - mmap: heap
        process: app
        size: 6GiB
      - write: heap
        process: app
      - fork: app
        child: child
        pid: 1001
      - oom_score_adj: child
        value: -100
        note: "badness drops by 100 x (totalpages / 1000) = 100 x 2097 pages"
      - write: heap
        process: child
        length: 3GiB
    expect:
      - killed: app
      - alive: child
      - oom_kills: 1
    """

    static let oom8GProtected = """
    name: oom-8g-protected
    description: "As oom-8g, but the parent runs with oom_score_adj -1000 and the child inherits it: no process can be killed (the kernel would panic)."
    machine:
      ram: 8GiB
    steps:
      - spawn: app
        pid: 1000
        oom_score_adj: -1000
      - mmap: heap
        process: app
        size: 6GiB
      - write: heap
        process: app
      - fork: app
        child: child
        pid: 1001
      - write: heap
        process: child
        length: 3GiB
    expect:
      - oom_kills: 0
      - failed_steps: 1
    """

    static let increment = """
    name: increment
    description: "The global/stack/heap increment example: the child's increments copy three pages; the parent, alone again, reuses its own."
    machine:
      ram: 8GiB
    files:
      - name: a.out
        size: 16KiB
    steps:
      - spawn: parent
        pid: 3128
      - mmap: text
        process: parent
        file: a.out
        size: 8KiB
        prot: rx
      - mmap: data
        process: parent
        file: a.out
        offset: 8KiB
        size: 4KiB
        prot: rw
        note: ".data/.bss: int global"
      - mmap: stack
        process: parent
        size: 132KiB
      - brk: heap
        process: parent
        size: 132KiB
      - read: text
        process: parent
      - store: data
        process: parent
        value: 0
        note: the first write to a private file page copies it from the page cache (do_cow_fault)
      - store: stack
        process: parent
        offset: 128KiB
        value: 0
      - store: heap
        process: parent
        value: 0
        note: calloc writes its chunk header in the same page
      - fork: parent
        child: child
        pid: 3129
      - increment: data
        process: child
      - increment: stack
        process: child
        offset: 128KiB
      - increment: heap
        process: child
      - exit: child
      - increment: data
        process: parent
      - increment: stack
        process: parent
        offset: 128KiB
      - increment: heap
        process: parent
    expect:
      - copies: {process: child, equals: 3}
      - copies: {process: parent, equals: 1}
      - value: {process: parent, region: data, equals: 1}
      - value: {process: parent, region: stack, offset: 128KiB, equals: 1}
      - value: {process: parent, region: heap, equals: 1}
    """

    static let memcgFork = """
    name: memcg-fork
    description: "A 48 MiB process with a mapped library forks inside a 64 MiB memory cgroup: the parent, with more RSS and page tables than its child, is killed."
    machine:
      ram: 8GiB
    cgroups:
      - name: box
        limit: 64MiB
    files:
      - name: libc.so.6
        size: 2MiB
    steps:
      - spawn: app
        pid: 2000
        cgroup: box
      - mmap: libc
        process: app
        file: libc.so.6
        size: 2MiB
        prot: rx
      - read: libc
        process: app
      - mmap: heap
        process: app
        size: 48MiB
      - write: heap
        process: app
      - fork: app
        child: child
        pid: 2001
        note: the library's PTEs are not copied; the child's file RSS starts at 0
      - write: heap
        process: child
    expect:
      - killed: app
      - alive: child
    """
}
