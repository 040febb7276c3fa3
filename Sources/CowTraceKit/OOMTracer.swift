import CowTraceFormat
import CBPF
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The programs of bpf/oom.bpf.c one attach tier needs on this kernel.
public struct OOMTierPlan: Sendable, Equatable {
    public let tier: AttachTier
    public let programs: [String]
    /// "task, uid" (6.9+) or "pid" (older kernels).
    public let markVictimPrototype: String
    /// oom_kill_process is hooked: the trigger's limit and cgroup are known.
    public var seesOOMControl: Bool { tier != .tracepoint }

    /// Decides from BTF and kallsyms; `tracepointArity` is the number of
    /// arguments of `btf_trace_mark_victim` (nil: no such tracepoint).
    public static func plan(_ tier: AttachTier, tracepointArity: Int?, kernel: KernelSymbols = LiveKernel()) -> Result<OOMTierPlan, TierPlanner.Unavailable> {
        let markVictim: (String, String)
        switch tracepointArity {
        case 2?: markVictim = ("tp_mark_victim", "task, uid")
        case 1?: markVictim = ("tp_mark_victim_pid", "pid")
        case let n?:
            return .failure(.init(description: "the kernel's mark_victim tracepoint takes \(n) arguments; cowtrace knows (task, uid) and (pid)"))
        case nil:
            return .failure(.init(description: "the kernel's BTF has no mark_victim tracepoint (btf_trace_mark_victim): it needs CONFIG_DEBUG_INFO_BTF and the oom tracepoints"))
        }
        var programs = [markVictim.0]
        switch tier {
        case .fentry:
            guard kernel.btfHasFunction("oom_kill_process") else {
                return .failure(.init(description: "oom_kill_process is not a function in the kernel's BTF, so fentry cannot attach to it"))
            }
            programs += ["fentry_oom_kill_process", "fexit_oom_kill_process"]
        case .kprobe:
            guard kernel.hasKprobePMU else {
                return .failure(.init(description: "the kernel has no kprobe PMU (built without CONFIG_KPROBES)"))
            }
            guard kernel.kallsymsHas("oom_kill_process") else {
                return .failure(.init(description: "oom_kill_process is not in /proc/kallsyms (inlined, or kallsyms is hidden: run as root)"))
            }
            programs += ["kprobe_oom_kill_process", "kretprobe_oom_kill_process"]
        case .tracepoint:
            break
        }
        return .success(OOMTierPlan(tier: tier, programs: programs, markVictimPrototype: markVictim.1))
    }

    /// The live kernel's mark_victim arity, or nil.
    public static func liveTracepointArity() -> Int? {
        let n = cbpf_vmlinux_tracepoint_arity("mark_victim")
        return n >= 0 ? Int(n) : nil
    }
}

/// Watches for OOM kills: loads bpf/oom.bpf.c on the best tier that attaches
/// (fentry, kprobe, then mark_victim alone) and delivers one `OOMKill` per
/// victim from `poll`. Detaches on `close()` or when released.
public final class OOMTracer {
    public let tier: AttachTier
    public let plan: OOMTierPlan
    /// Every tier tried, in order, with why it failed.
    public let attempts: [TierAttempt]

    private var object: BPFObject?
    private var links: [BPFLink] = []
    private var ringBuffer: RingBuffer?
    private let sink: OOMSink
    private let maps: OOMMaps

    public init(options: TracerOptions) throws {
        let missing = KernelFacts.missingBPFCapabilities()
        if !missing.isEmpty { throw TracerError.notPrivileged(missing: missing) }
        guard FileManager.default.fileExists(atPath: KernelFacts.btfPath) else {
            throw TracerError.btfMissing(path: KernelFacts.btfPath)
        }
        LibBPFLog.enableCapture(verbose: options.verbose)
        let arity = OOMTierPlan.liveTracepointArity()

        let chosen = try TierAttempts.first(
            forced: options.tier, abortOnPlanFailure: arity == nil,
            plan: { OOMTierPlan.plan($0, tracepointArity: arity) }
        ) { plan -> (object: BPFObject, links: [BPFLink], maps: OOMMaps) in
            let object = try BPFObject(bytes: EmbeddedBPF.oom, name: "oom")
            let maps = try OOMMaps(object)
            try object.enableOnly(Set(plan.programs))
            guard let config = object.rodataVariable("oom_cfg", as: oom_config.self) else {
                throw TracerError.openObject(.noEntry)
            }
            config.pointee.nr_cpus = UInt32(max(1, libbpf_num_possible_cpus()))
            try object.load(tier: plan.tier)
            let links = try object.attach(plan.programs, tier: plan.tier)
            return (object, links, maps)
        }
        attempts = chosen.attempts
        object = chosen.loaded.object
        links = chosen.loaded.links
        maps = chosen.loaded.maps
        plan = chosen.plan
        tier = chosen.plan.tier
        sink = OOMSink(memcgRange: KernelSymbolRange(named: "mem_cgroup_out_of_memory"))

        ringBuffer = try RingBuffer(map: maps.events, as: oom_kill_event.self) { [sink] in
            sink.deliver($0)
        }
        KernelFacts.releaseLoadMemory() // see CowTracer.init
    }

    deinit { close() }

    /// Detaches the programs and frees the maps.
    public func close() {
        ringBuffer = nil
        links.removeAll()
        object?.close()
        object = nil
    }

    /// Kills seen from now on go to `handler`, called from `poll`.
    public func onKill(_ handler: @escaping (OOMKill) -> Void) {
        sink.handler = handler
    }

    /// Waits up to `timeoutMilliseconds` for kills; returns how many were delivered.
    @discardableResult
    public func poll(timeoutMilliseconds: Int32) -> Int {
        ringBuffer?.poll(timeoutMilliseconds: timeoutMilliseconds) ?? 0
    }

    /// Records the kernel could not send (ring buffer full).
    public func lostRecords() throws -> UInt64 {
        try maps.drops.values(UInt32(OOM_DROP_RINGBUF_FULL.rawValue)).reduce(0, &+)
    }
}

final class OOMSink {
    var handler: ((OOMKill) -> Void)?
    let memcgRange: KernelSymbolRange?
    let hierarchy = MemoryCgroupHierarchy.live()

    init(memcgRange: KernelSymbolRange?) { self.memcgRange = memcgRange }

    func deliver(_ raw: oom_kill_event) {
        var kill = OOMKill(raw) { [memcgRange] stack in
            guard let range = memcgRange, !stack.isEmpty else { return nil }
            return stack.contains { range.contains($0) }
        }
        MemoryCgroupLimit.fill(&kill, hierarchy: hierarchy)
        handler?(kill)
    }
}

/// A kernel function's text, [start, next symbol), from /proc/kallsyms.
struct KernelSymbolRange {
    let start: UInt64
    let end: UInt64

    init?(named name: String) {
        guard let text = readPseudoFileBytes("/proc/kallsyms") else { return nil }
        self.init(named: name, kallsyms: text)
    }

    /// From the text of /proc/kallsyms ("ADDRESS TYPE NAME[\t[MODULE]]"
    /// lines): `name`'s address among the text symbols (t, T) and the next
    /// text symbol's. Read as bytes: the file has some 200,000 lines, which
    /// as Strings cost the recorder half a second at start.
    init?(named name: String, kallsyms text: [UInt8]) {
        let wanted = Array(name.utf8)
        var start: UInt64?
        var addresses: [UInt64] = []
        text.withUnsafeBufferPointer { bytes in
            let n = bytes.count
            var i = 0
            while i < n {
                // One line: up to three fields separated by spaces (runs of
                // spaces count as one), the third ending at a space or the line's end.
                var lineEnd = i
                while lineEnd < n && bytes[lineEnd] != 0x0A { lineEnd += 1 }
                defer { i = lineEnd + 1 }
                var fields = (from: (0, 0, 0), to: (0, 0, 0)), count = 0
                var j = i
                while count < 3 && j < lineEnd {
                    while j < lineEnd && bytes[j] == 0x20 { j += 1 }
                    if j == lineEnd { break }
                    let from = j
                    while j < lineEnd && bytes[j] != 0x20 { j += 1 }
                    switch count {
                    case 0: fields.from.0 = from; fields.to.0 = j
                    case 1: fields.from.1 = from; fields.to.1 = j
                    default: fields.from.2 = from; fields.to.2 = j
                    }
                    count += 1
                }
                guard count == 3, fields.to.1 - fields.from.1 == 1,
                      bytes[fields.from.1] == UInt8(ascii: "t") || bytes[fields.from.1] == UInt8(ascii: "T"),
                      let address = KernelSymbolRange.hex(bytes, fields.from.0, fields.to.0), address != 0 else { continue }
                addresses.append(address)
                let from = fields.from.2, length = fields.to.2 - from
                if length == wanted.count && wanted.withUnsafeBufferPointer({ w in
                    (0..<length).allSatisfy { bytes[from + $0] == w[$0] } }) {
                    start = address
                }
            }
        }
        guard let start, let end = addresses.filter({ $0 > start }).min() else { return nil }
        self.start = start
        self.end = end
    }

    /// bytes[from..<to] as a hexadecimal number (digits only, at most 16).
    private static func hex(_ bytes: UnsafeBufferPointer<UInt8>, _ from: Int, _ to: Int) -> UInt64? {
        guard to > from, to - from <= 16 else { return nil }
        var v: UInt64 = 0
        for k in from..<to {
            let c = bytes[k]
            let d: UInt8
            switch c {
            case 0x30...0x39: d = c - 0x30
            case 0x61...0x66: d = c - 0x61 + 10
            case 0x41...0x46: d = c - 0x41 + 10
            default: return nil
            }
            v = v << 4 | UInt64(d)
        }
        return v
    }

    func contains(_ address: UInt64) -> Bool { address >= start && address < end }
}

/// What cgroupfs says about the victim's memory cgroup: its own limit, and on
/// the tracepoint tier (where the kernel does not say which cgroup's limit was
/// hit) the tightest limit on it and its ancestors, which is the one judged against.
enum MemoryCgroupLimit {
    static func fill(_ kill: inout OOMKill, hierarchy: MemoryCgroupHierarchy?) {
        guard let hierarchy, !kill.cgroup.hasPrefix("…") else { return }
        kill.cgroupLimitBytes = hierarchy.limitBytes(ofCgroup: kill.cgroup)
        guard kill.constraint == .memcg && kill.limitPages == nil else { return }
        var path = kill.cgroup
        var best: (UInt64, String)?
        while true {
            if let bytes = hierarchy.limitBytes(ofCgroup: path) {
                let pages = bytes / 4096
                if best == nil || pages < best!.0 { best = (pages, path) }
            }
            if path == "/" { break }
            path = (path as NSString).deletingLastPathComponent
            if path.isEmpty { path = "/" }
        }
        if let (pages, cgroup) = best {
            kill.limitPages = pages
            kill.oomCgroup = cgroup
            kill.limitSource = "cgroupfs"
        }
    }
}
