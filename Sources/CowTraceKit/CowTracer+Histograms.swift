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
        guard object != nil else { return [] }
        var byPid: [Int32: [HistogramKind: Log2Histogram]] = [:]
        for key in try maps.histograms.keys() {
            if var raw = maps.histograms.lookup(key), let kind = HistogramKind(rawValue: key.kind) {
                let buckets = withUnsafeBytes(of: &raw.slots) { Array($0.bindMemory(to: UInt64.self)) }
                let h = Log2Histogram(buckets: buckets, sum: raw.sum, count: raw.count)
                if h.count > 0 { byPid[Int32(bitPattern: key.tgid), default: [:]][kind] = h }
            }
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
        guard object != nil else { return [] }
        var result: [StackCount] = []
        for key in try maps.stackCopies.keys() {
            guard let count = maps.stackCopies.lookup(key) else { continue }
            var addresses: [UInt64] = []
            if key.stack_id >= 0, let frames = try? maps.stacks.values(UInt32(key.stack_id)) {
                addresses = Array(frames.prefix { $0 != 0 })
            }
            result.append(StackCount(pid: Int32(bitPattern: key.tgid), stackID: key.stack_id, addresses: addresses, copies: count))
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
