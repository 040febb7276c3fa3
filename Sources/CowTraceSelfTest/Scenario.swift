import CowTraceKit
/// A workload run whose copy-on-write faults are known in advance, page by
/// page, from the order of writes: the matrix `selftest` and the tests run.
public struct Scenario: Sendable {
    public enum Role: String, Sendable, CaseIterable { case parent, child }

    /// What one process must show, by class; nil leaves a class unchecked.
    public struct Expected: Sendable, Equatable {
        public var copies: Int?
        public var reuses: Int?
        public var zeroFills: Int?
        public var fileCopies: Int?
        public var sharedWrites: Int?
        public var execs: Int?
        public init(copies: Int? = 0, reuses: Int? = 0, zeroFills: Int? = 0, fileCopies: Int? = 0, sharedWrites: Int? = 0, execs: Int? = 0) {
            self.copies = copies
            self.reuses = reuses
            self.zeroFills = zeroFills
            self.fileCopies = fileCopies
            self.sharedWrites = sharedWrites
            self.execs = execs
        }
    }

    public let name: String
    public let summary: String
    public let arguments: [String]
    public let expected: [Role: Expected]
    /// Shared-file writes fault only where the file system tracks dirty pages
    /// (ext4, xfs); on tmpfs the first read maps the page writable.
    public let sharedWritesNeedWriteback: Bool

    init(_ name: String, _ summary: String, _ arguments: [String], parent: Expected, child: Expected = Expected(), sharedWritesNeedWriteback: Bool = false) {
        self.name = name
        self.summary = summary
        self.arguments = arguments
        self.expected = [.parent: parent, .child: child]
        self.sharedWritesNeedWriteback = sharedWritesNeedWriteback
    }

    /// The slack every class is allowed: the workload's own stack, libc data
    /// and stdio buffers take a few extra faults around fork (measured: up to
    /// 7 copies in a child, 19 reuses in a parent after its child exits), and
    /// a transient page reference (LRU batch) can turn a reuse into a copy.
    public static func tolerance(for expected: Int) -> Int { 32 + expected / 200 }
    public static let toleranceDescription = "32 pages + 0.5 %"


    public static let matrix: [Scenario] = [
        Scenario("child-writes-half", "64 MiB filled, fork; the child writes half: every write copies",
                 ["--pages", "16384", "child:write:0:8192", "child:exit"],
                 parent: Expected(), child: Expected(copies: 8192)),
        Scenario("parent-writes-child-alive", "the parent writes all 64 MiB while the child lives: all copies",
                 ["--pages", "16384", "parent:write:0:16384", "child:exit"],
                 parent: Expected(copies: 16384)),
        Scenario("parent-writes-child-exited", "the child exits first: the parent owns every page again, all reuses",
                 ["--pages", "16384", "child:exit", "parent:write:0:16384"],
                 parent: Expected(reuses: 16384)),
        Scenario("child-first-then-parent", "the child copies 4096 pages; the parent then reuses those and copies 4096 more, reuses the rest after the child exits",
                 ["--pages", "16384", "child:write:0:4096", "parent:write:0:8192", "child:exit", "parent:write:8192:16384"],
                 parent: Expected(copies: 4096, reuses: 12288), child: Expected(copies: 4096)),
        Scenario("parent-first-then-child", "the parent copies 4096 pages; the child reuses those and copies 4096 more",
                 ["--pages", "16384", "parent:write:0:4096", "child:write:0:8192", "child:exit"],
                 parent: Expected(copies: 4096), child: Expected(copies: 4096, reuses: 4096)),
        // The kernel writes the pages (read(2) into a buffer the fork shares, as a server reading a request
        // does): every copy is made in a kernel-mode fault, which no user page-fault event shows.
        Scenario("child-reads-into-shared", "the child read()s 16 MiB from /dev/zero into the shared region: the kernel's writes copy every page",
                 ["--pages", "4096", "child:kwrite:0:4096", "child:exit"],
                 parent: Expected(), child: Expected(copies: 4096)),
        Scenario("kernel-writes-copy-and-reuse", "read()s into the region: the child copies 1024 pages, the parent reuses those and copies 1024, then reuses the rest after the child exits",
                 ["--pages", "4096", "child:kwrite:0:1024", "parent:kwrite:0:2048", "child:exit", "parent:kwrite:2048:4096"],
                 parent: Expected(copies: 1024, reuses: 3072), child: Expected(copies: 1024)),
        // read(2) of a file into the buffer, as a worker loading data does: the read's readahead allocates
        // page-cache pages between the faults, and none of them may pass for a copy of a reused page.
        Scenario("file-read-into-buffer", "the child read()s a cold file into half the region (copies); after it exits the parent reads it into all of it (reuses, no copy)",
                 ["--pages", "4096", "child:kfile:0:2048", "child:exit", "parent:kfile:0:4096"],
                 parent: Expected(reuses: 4096), child: Expected(copies: 2048)),
        Scenario("small-region", "1 MiB region, the child writes all of it",
                 ["--pages", "256", "child:write:0:256", "child:exit"],
                 parent: Expected(), child: Expected(copies: 256)),
        Scenario("large-region", "128 MiB region, the child writes all of it",
                 ["--pages", "32768", "child:write:0:32768", "child:exit"],
                 parent: Expected(), child: Expected(copies: 32768)),
        Scenario("zero-page", "a region only read before fork maps the zero page: first writes are zero fills in both",
                 ["--pages", "16", "--zero-pages", "4097", "child:zwrite:0:4096", "child:exit", "parent:zwrite:0:4096"],
                 parent: Expected(zeroFills: 4096), child: Expected(zeroFills: 4096)),
        // MADV_NOHUGEPAGE: small page-cache folios, so the child's reads map every page and each write is a
        // write-protect fault (large folios leave pages unmapped, whose shared writes do_wp_page never sees).
        Scenario("shared-file", "MAP_SHARED file: the child reads then writes 2048 pages; nothing is ever copied",
                 ["--pages", "2048", "--map", "shared-file", "--file-nohugepage", "child:read:0:2048", "child:write:0:2048", "child:exit"],
                 parent: Expected(), child: Expected(sharedWrites: 2048), sharedWritesNeedWriteback: true),
        Scenario("private-file-nohugepage", "MAP_PRIVATE file with MADV_NOHUGEPAGE read, then 2048 pages written: each write is a write-protect fault that copies the page-cache page",
                 ["--pages", "2048", "--map", "private-file", "--file-nohugepage", "--prefault", "read", "--no-fork", "parent:write:0:2048"],
                 parent: Expected(fileCopies: 2048)),
        // No madvise, as real programs: with page-cache large folios (ext4, 6.18) the reads leave most pages
        // unmapped, and their writes are not-present faults copied by do_cow_fault.
        Scenario("private-file-read-then-write", "MAP_PRIVATE file read, then all 2816 pages written: every write copies a page-cache page, most of them in do_cow_fault",
                 ["--pages", "2816", "--map", "private-file", "--prefault", "read", "--no-fork", "parent:write:0:2816"],
                 parent: Expected(fileCopies: 2816)),
        Scenario("private-file-write-without-read", "MAP_PRIVATE file written without a read first: 2304 not-present writes, each copied by do_cow_fault",
                 ["--pages", "2304", "--map", "private-file", "--prefault", "none", "--no-fork", "parent:write:0:2304"],
                 parent: Expected(fileCopies: 2304)),
        // The new image's own start-up (ld.so relocations, .bss) is not the fork's cost: unchecked.
        Scenario("fork-exec", "fork then exec at once: the child copies (almost) nothing",
                 ["--pages", "16384", "child:exec"],
                 parent: Expected(), child: Expected(copies: 0, reuses: nil, zeroFills: nil, fileCopies: nil, sharedWrites: 0, execs: 1)),
        Scenario("thp-child-writes", "2 MiB-aligned region with THP asked for: a shared huge page is split, copies are still 4 KiB each",
                 ["--pages", "1024", "--thp", "child:write:0:1024", "child:exit"],
                 parent: Expected(), child: Expected(copies: 1024)),
    ]

    public static func named(_ name: String) -> Scenario? { matrix.first { $0.name == name } }
}
