import CBPF
#if canImport(Glibc)
import Glibc
#endif

extension CowTracer {
    /// Every histogram the kernel bucketed (needs `TracerOptions.histograms`),
    /// per process. The open copies-per-interval interval of a live process is
    /// not in it until the next interval starts or the process exits.
    /// `identities`: names already read (from `snapshot()`), to spare a read.
    public func histograms(identities known: [Int32: ProcessIdentity]? = nil) throws -> [ProcessHistograms] {
        guard let object else { return [] }
        let fd = try object.mapDescriptor("histograms")
        var byPid: [Int32: [HistogramKind: Log2Histogram]] = [:]
        var key = cowtrace_hist_key()
        var next = cowtrace_hist_key()
        var rc = bpf_map_get_next_key(fd, nil, &next)
        while rc == 0 {
            var raw = cowtrace_hist()
            var k = next
            if bpf_map_lookup_elem(fd, &k, &raw) == 0, let kind = HistogramKind(rawValue: next.kind) {
                let buckets = withUnsafeBytes(of: &raw.slots) { Array($0.bindMemory(to: UInt64.self)) }
                let h = Log2Histogram(buckets: buckets, sum: raw.sum, count: raw.count)
                if h.count > 0 { byPid[Int32(bitPattern: next.tgid), default: [:]][kind] = h }
            }
            key = next
            rc = bpf_map_get_next_key(fd, &key, &next)
        }
        if Errno(rc) != Errno.noEntry {
            throw TracerError.mapAccess(map: "histograms", operation: "iterate", errno: Errno(rc))
        }
        let identities = known ?? (try? snapshot().info) ?? [:]
        return byPid.keys.sorted().map { pid in
            ProcessHistograms(pid: pid, comm: identities[pid]?.comm ?? ProcFS.comm(of: pid) ?? "?", histograms: byPid[pid]!)
        }
    }

    /// Copies per (process, user stack) (needs `TracerOptions.userStacks`):
    /// the stack as return addresses, innermost first; empty when the kernel
    /// could not walk it (no frame pointers, or the stack map was full).
    public func stackCounts() throws -> [StackCount] {
        guard let object else { return [] }
        let countsFD = try object.mapDescriptor("stack_copies")
        let stacksFD = try object.mapDescriptor("stacks")
        var result: [StackCount] = []
        var key = cowtrace_stack_key()
        var next = cowtrace_stack_key()
        var rc = bpf_map_get_next_key(countsFD, nil, &next)
        var frames = [UInt64](repeating: 0, count: 127)
        while rc == 0 {
            var k = next
            var count: UInt64 = 0
            if bpf_map_lookup_elem(countsFD, &k, &count) == 0 {
                var addresses: [UInt64] = []
                if next.stack_id >= 0 {
                    var id = UInt32(next.stack_id)
                    if frames.withUnsafeMutableBytes({ bpf_map_lookup_elem(stacksFD, &id, $0.baseAddress) }) == 0 {
                        addresses = Array(frames.prefix { $0 != 0 })
                    }
                }
                result.append(StackCount(pid: Int32(bitPattern: next.tgid), stackID: next.stack_id, addresses: addresses, copies: count))
            }
            key = next
            rc = bpf_map_get_next_key(countsFD, &key, &next)
        }
        if Errno(rc) != Errno.noEntry {
            throw TracerError.mapAccess(map: "stack_copies", operation: "iterate", errno: Errno(rc))
        }
        return result.sorted { ($0.copies, $1.pid) > ($1.copies, $0.pid) }
    }
}

/// Copies made by one process under one user stack.
public struct StackCount: Equatable, Sendable {
    public var pid: Int32
    /// The kernel's stack id (negative: no stack: -EFAULT when it could not be read, -EEXIST on a hash collision).
    public var stackID: Int32
    /// Return addresses, innermost first.
    public var addresses: [UInt64]
    public var copies: UInt64
}
