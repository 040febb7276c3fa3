import CowTraceKit
import CowTraceFormat
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The kernel's own account of a kill: the "Killed process" line it prints.
public struct KernelOOMLine: Sendable, Equatable {
    public var memcg: Bool
    public var pid: Int32
    public var comm: String
    public var totalVMKiB: UInt64
    public var anonRSSKiB: UInt64
    public var fileRSSKiB: UInt64
    public var shmemRSSKiB: UInt64
    public var uid: UInt32
    public var pageTablesKiB: UInt64
    public var oomScoreAdj: Int32
    public var text: String

    /// Parses "Memory cgroup out of memory: Killed process PID (comm) total-vm:…kB,
    /// anon-rss:…kB, file-rss:…kB, shmem-rss:…kB, UID:0 pgtables:…kB oom_score_adj:0"
    /// (a /dev/kmsg record's "prio,seq,ts,flags;" prefix is skipped).
    public static func parse(_ line: String) -> KernelOOMLine? {
        let record = line.split(separator: "\n").first.map(String.init) ?? line // kmsg continuation lines follow
        let message = (record.split(separator: ";", maxSplits: 1).count == 2 && record.first?.isNumber == true
            ? String(record.split(separator: ";", maxSplits: 1)[1]) : record).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let killed = message.range(of: "Killed process ") else { return nil }
        let rest = message[killed.upperBound...]
        guard let open = rest.range(of: " ("), let pid = Int32(rest[..<open.lowerBound]),
              let close = rest.range(of: ") total-vm:", options: .backwards) else { return nil }
        let comm = String(rest[open.upperBound..<close.lowerBound])
        var fields: [String: String] = [:]
        for token in rest[close.upperBound...].replacingOccurrences(of: ",", with: " ").split(separator: " ") {
            let kv = token.split(separator: ":", maxSplits: 1)
            if kv.count == 2 { fields[String(kv[0])] = String(kv[1]) }
        }
        fields["total-vm"] = String(rest[close.upperBound...].prefix { $0.isNumber })
        func kib(_ key: String) -> UInt64? { fields[key].flatMap { UInt64($0.replacingOccurrences(of: "kB", with: "")) } }
        guard let vm = kib("total-vm"), let anon = kib("anon-rss"), let file = kib("file-rss"),
              let shmem = kib("shmem-rss"), let uid = fields["UID"].flatMap(UInt32.init),
              let pgtables = kib("pgtables"), let adj = fields["oom_score_adj"].flatMap(Int32.init) else { return nil }
        return KernelOOMLine(memcg: message.contains("Memory cgroup out of memory"), pid: pid, comm: comm,
                             totalVMKiB: vm, anonRSSKiB: anon, fileRSSKiB: file, shmemRSSKiB: shmem,
                             uid: uid, pageTablesKiB: pgtables, oomScoreAdj: adj,
                             text: message.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

/// New kernel log records, read from /dev/kmsg from the moment it is opened.
final class KernelLog {
    private let fd: Int32

    init() throws {
        fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw OOMSelfTestError.kernelLog(errno: .current) }
        lseek(fd, 0, SEEK_END)
    }

    deinit { close(fd) }

    /// Every record logged since the last call (or since init).
    func newRecords() -> [String] {
        var records: [String] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                records.append(String(decoding: buffer[0..<n], as: UTF8.self))
            } else if n < 0 && errno == EPIPE {
                continue // records were overwritten before we read them
            } else {
                break // EAGAIN: nothing more
            }
        }
        return records
    }
}

public enum OOMSelfTestError: Error, CustomStringConvertible {
    case noMemoryCgroup
    case badParent(path: String, hierarchy: MemoryCgroupHierarchy)
    case memoryNotDelegated(parent: String)
    case parentHasProcesses(parent: String)
    case cgroupSetup(path: String, errno: Errno)
    case kernelLog(errno: Errno)

    public var description: String {
        switch self {
        case .noMemoryCgroup:
            return "no memory cgroup controller in /proc/self/mountinfo: mount cgroup2 (mount -t cgroup2 none /sys/fs/cgroup) or a cgroup v1 hierarchy with -o memory"
        case .badParent(let path, let hierarchy):
            return "--parent-cgroup \(path) is not a cgroup directory of the memory hierarchy (cgroup \(hierarchy.version) at \(hierarchy.mountPoint)): pass a directory under it"
        case .memoryNotDelegated(let parent):
            return "the memory controller is not available in \(parent) (its cgroup.controllers lacks memory): enable +memory in its parent's cgroup.subtree_control, or pass --parent-cgroup with a cgroup that has it"
        case .parentHasProcesses(let parent):
            return "cannot enable +memory in \(parent)/cgroup.subtree_control: EBUSY, it holds processes of its own (cgroup v2 allows controllers only above leaves); pass --parent-cgroup with an empty delegated cgroup"
        case .cgroupSetup(let path, let errno):
            return "cannot set up memory cgroup \(path): \(errno); run as root with the memory controller mounted"
        case .kernelLog(let errno):
            return "cannot read the kernel log /dev/kmsg: \(errno); run as root (or with CAP_SYSLOG)"
        }
    }
}

/// A real memory-cgroup OOM kill, checked against the kernel's own line:
/// a 48 MiB workload in a 64 MiB cgroup forks; the child (oom_score_adj 500)
/// rewrites every page, its copies push the cgroup past the limit, the kernel
/// kills it. `cowtrace oom-selftest` and the XCTest run this.
public struct OOMSelfTest {
    public static let limitBytes: UInt64 = 64 << 20
    public static let regionPages = 12288 // 48 MiB
    public static let childOOMScoreAdj: Int32 = 500
    /// Slack on every kB figure: 2 pages. The victim is stopped in the
    /// allocation that failed, between mark_victim and the kernel's printk, so
    /// the figures should be equal; the slack covers one page moving between
    /// counters on another CPU.
    public static let slackKiB: UInt64 = 8
    public static let toleranceDescription = "pid, comm, uid and oom_score_adj exact; total-vm, anon/file/shmem rss and pgtables within \(slackKiB) kB"

    public struct Check: Sendable {
        public let name: String
        public let reported: String
        public let kernel: String
        public let passed: Bool
        public let note: String?
    }

    public struct Result: Sendable {
        public let tier: AttachTier
        public let markVictimPrototype: String
        public let kill: OOMKill?
        public let kernelLine: KernelOOMLine?
        public let lineage: String?
        public let workloadStatus: Int32?
        public let checks: [Check]
        public let lostRecords: UInt64
        /// The test cgroup's directory, its cgroup version, and what was done to set it up.
        public let cgroupDirectory: String
        public let cgroupVersion: MemoryCgroupHierarchy.Version
        public let notes: [String]
        public var passed: Bool { !checks.isEmpty && checks.allSatisfy(\.passed) }
    }

    public let options: TracerOptions
    public let workload: Workload
    public let timeoutSeconds: Double
    /// Where to create the test cgroup (nil: the memory hierarchy's top). On
    /// v2 a delegated subtree: a cgroup with no processes of its own.
    public let parentCgroup: String?

    public init(options: TracerOptions, workload: Workload, timeoutSeconds: Double = 60, parentCgroup: String? = nil) {
        self.options = options
        self.workload = workload
        self.timeoutSeconds = timeoutSeconds
        self.parentCgroup = parentCgroup
    }

    public func run() throws -> Result {
        let cgroup = try TemporaryMemoryCgroup(limitBytes: Self.limitBytes, parent: parentCgroup)
        defer { cgroup.remove() }
        let log = try KernelLog()
        let oom = try OOMTracer(options: options)
        defer { oom.close() }
        var lineageOptions = options
        lineageOptions.selection.followSpawnedChildren = true
        lineageOptions.tier = nil
        let lineageTracer = try? CowTracer(options: lineageOptions)
        defer { lineageTracer?.close() }

        var kill: OOMKill?
        var report: OOMReport?
        oom.onKill { k in
            guard kill == nil, k.cgroup == cgroup.cgroupPath || k.cgroupID == cgroup.inode else { return }
            kill = k
            let snapshot = try? lineageTracer?.snapshot()
            let ancestry = OOMAncestry.build(victim: k.pid, comm: k.comm, snapshot: snapshot, pageSize: 4096)
            report = OOMReport(kill: k, ancestry: ancestry)
        }

        let script = "echo $$ > \"$1\" && shift && exec \"$@\""
        let arguments = ["/bin/sh", "-c", script, "sh", cgroup.procsFile, workload.path,
                         "--pages", "\(Self.regionPages)", "--child-oom-score-adj", "\(Self.childOOMScoreAdj)",
                         "child:write:0:\(Self.regionPages)"]
        let (pid, output) = try Subprocess.spawn(arguments, captureOutput: true)
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(timeoutSeconds * 1e9)
        var status: Int32?
        while status == nil && DispatchTime.now().uptimeNanoseconds < deadline {
            oom.poll(timeoutMilliseconds: 100)
            status = Subprocess.poll(pid)
        }
        if status == nil {
            Glibc.kill(pid, SIGKILL)
            _ = Subprocess.wait(pid)
        }
        for _ in 0..<5 where kill == nil { oom.poll(timeoutMilliseconds: 100) }
        let text = String(decoding: output?.readDataToEndOfFile() ?? Data(), as: UTF8.self)
        let workloadReport = text.split(separator: "\n").last.flatMap { try? JSONDecoder().decode(Workload.Report.self, from: Data($0.utf8)) }

        var kernelLine: KernelOOMLine?
        for _ in 0..<20 {
            let lines = log.newRecords().compactMap(KernelOOMLine.parse)
            if let k = kill { kernelLine = lines.first { $0.pid == k.pid } ?? kernelLine } else { kernelLine = lines.first ?? kernelLine }
            if kernelLine != nil { break }
            usleep(100_000)
        }

        let checks = Self.compare(kill: kill, kernel: kernelLine, report: report, workload: workloadReport,
                                  cgroup: Expected(path: cgroup.cgroupPath, version: cgroup.hierarchy.version,
                                                   swapTotalPages: Self.swapTotalPages()),
                                  lineageTraced: lineageTracer != nil)
        return Result(tier: oom.tier, markVictimPrototype: oom.plan.markVictimPrototype, kill: kill, kernelLine: kernelLine,
                      lineage: report?.lineage, workloadStatus: status, checks: checks,
                      lostRecords: (try? oom.lostRecords()) ?? 0, cgroupDirectory: cgroup.path,
                      cgroupVersion: cgroup.hierarchy.version, notes: cgroup.notes)
    }

    /// What the test cgroup is, for the checks.
    struct Expected {
        let path: String
        let version: MemoryCgroupHierarchy.Version
        let swapTotalPages: UInt64
    }

    /// SwapTotal from /proc/meminfo, in pages.
    static func swapTotalPages() -> UInt64 {
        let line = (readPseudoFile("/proc/meminfo") ?? "").split(separator: "\n").first { $0.hasPrefix("SwapTotal:") }
        let kib = line.flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { UInt64($0) } ?? 0
        return kib / 4
    }

    static func compare(kill: OOMKill?, kernel: KernelOOMLine?, report: OOMReport?, workload: Workload.Report?,
                        cgroup: Expected, lineageTraced: Bool) -> [Check] {
        var checks: [Check] = []
        guard let k = kill else {
            return [Check(name: "kill seen", reported: "none", kernel: kernel.map { "pid \($0.pid)" } ?? "none", passed: false,
                          note: "no mark_victim record for a process of the test cgroup")]
        }
        guard let d = kernel else {
            return [Check(name: "kernel line", reported: "pid \(k.pid)", kernel: "none", passed: false,
                          note: "no \"Killed process \(k.pid)\" line in /dev/kmsg")]
        }
        func exact<T: Equatable & CustomStringConvertible>(_ name: String, _ r: T, _ d: T) {
            checks.append(Check(name: name, reported: r.description, kernel: d.description, passed: r == d, note: nil))
        }
        func close(_ name: String, _ r: UInt64, _ d: UInt64, approx: UInt64? = nil) {
            let diff = r > d ? r - d : d - r
            if diff <= slackKiB {
                checks.append(Check(name: name, reported: "\(r) kB", kernel: "\(d) kB", passed: true, note: nil))
            } else if let a = approx, (a > d ? a - d : d - a) <= slackKiB {
                // Kernels before the 2026 OOM accuracy fix print the central count only.
                checks.append(Check(name: name, reported: "\(r) kB (central count \(a) kB)", kernel: "\(d) kB", passed: true,
                                    note: "this kernel prints the approximate per-CPU counter; cowtrace's exact sum differs by \(diff) kB"))
            } else {
                checks.append(Check(name: name, reported: "\(r) kB", kernel: "\(d) kB", passed: false, note: "off by \(diff) kB"))
            }
        }
        exact("pid", k.pid, d.pid)
        exact("comm", k.comm, d.comm)
        exact("victim read", k.victimRead, true)
        close("total-vm", k.totalVMKiB, d.totalVMKiB)
        close("anon-rss", k.anonRSSKiB, d.anonRSSKiB, approx: k.anonRSSApproximateKiB)
        close("file-rss", k.fileRSSKiB, d.fileRSSKiB, approx: k.fileRSSApproximateKiB)
        close("shmem-rss", k.shmemRSSKiB, d.shmemRSSKiB, approx: k.shmemRSSApproximateKiB)
        close("pgtables", k.pageTablesKiB, d.pageTablesKiB)
        exact("uid", k.uid, d.uid)
        exact("oom_score_adj", k.oomScoreAdj, d.oomScoreAdj)
        // A probe that read nothing would match a kernel line of zeros: the region is 48 MiB.
        checks.append(Check(name: "anon-rss is the region", reported: "\(k.anonRSSKiB) kB", kernel: "≥ \(regionPages * 4 / 2) kB",
                            passed: k.anonRSSKiB >= UInt64(regionPages * 4 / 2), note: nil))
        exact("memcg OOM", k.constraint == .memcg, d.memcg)
        exact("cgroup", k.cgroup, cgroup.path)
        let limitPages = limitBytes / 4096
        let limitFile = cgroup.version == .v2 ? "memory.max" : "memory.limit_in_bytes"
        checks.append(Check(name: "cgroup's \(limitFile)", reported: k.cgroupLimitBytes.map { "\($0) bytes" } ?? "none",
                            kernel: "\(limitBytes) bytes (set by the test)", passed: k.cgroupLimitBytes == limitBytes, note: nil))
        exact("limit hit in", k.oomCgroup ?? "unknown", cgroup.path)
        // oc->totalpages is mem_cgroup_get_max(): the limit, plus on v1 the swap
        // it may use (the test sets v2's memory.swap.max to 0; v1 has no such knob).
        let slackPages = k.limitSource == "oom_control" && cgroup.version == .v1 ? cgroup.swapTotalPages : 0
        let limit = k.limitPages ?? 0
        checks.append(Check(name: "limit judged against", reported: k.limitPages.map { "\($0) pages (\(k.limitSource ?? "?"))" } ?? "none",
                            kernel: slackPages == 0 ? "\(limitPages) pages" : "\(limitPages) ... \(limitPages + slackPages) pages",
                            passed: limit >= limitPages && limit <= limitPages + slackPages, note: nil))
        if let w = workload, let child = w.child {
            exact("victim is the child", k.pid, child)
            if lineageTraced, let chain = report?.ancestry?.chain, chain.count > 1 {
                exact("lineage parent", chain[1].pid, w.parent)
                let pages = chain[0].pagesCopied ?? 0
                checks.append(Check(name: "copies before the kill", reported: "\(pages) pages", kernel: "1 ..< \(regionPages)",
                                    passed: pages > 0 && pages < UInt64(regionPages), note: nil))
            }
        }
        return checks
    }
}
