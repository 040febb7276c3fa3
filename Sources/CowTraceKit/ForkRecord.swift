import CBPF

/// One fork of a traced process: when, how long the parent spent in the
/// syscall, how big it was, and the copies attributed to it until the child
/// exec'd or exited.
public struct ForkRecord: Sendable, Equatable {
    public enum End: Sendable, Equatable { case exec, exit }

    public var parent: Int32
    public var child: Int32
    public var forkNanoseconds: UInt64
    /// The parent's time in fork/clone/vfork/clone3; nil if not seen (the
    /// syscall began before tracing). vfork and posix_spawn include the wait
    /// for the child's exec.
    public var latencyNanoseconds: UInt64?
    public var totalVMPages: UInt64
    public var endNanoseconds: UInt64?
    public var endedBy: End?
    public var parentCopiesAtFork: UInt64
    public var parentCopiesAtEnd: UInt64?
    /// The child's copies (anon and file) when it exec'd or exited.
    public var childCopiesAtEnd: UInt64?

    public init(_ raw: cowtrace_fork_record) {
        parent = Int32(bitPattern: raw.parent)
        child = Int32(bitPattern: raw.child)
        forkNanoseconds = raw.fork_ns
        latencyNanoseconds = raw.latency_ns == 0 ? nil : raw.latency_ns
        totalVMPages = raw.total_vm_pages
        parentCopiesAtFork = raw.parent_copies_at_fork
        switch UInt32(raw.ended_by) {
        case COWTRACE_FORK_ENDED_BY_EXEC.rawValue: endedBy = .exec
        case COWTRACE_FORK_ENDED_BY_EXIT.rawValue: endedBy = .exit
        default: endedBy = nil
        }
        endNanoseconds = endedBy == nil ? nil : raw.end_ns
        parentCopiesAtEnd = endedBy == nil ? nil : raw.parent_copies_at_end
        childCopiesAtEnd = endedBy == nil ? nil : raw.child_copies_at_end
    }

    /// The parent's copies while this child lived (up to its exec or exit);
    /// for a running child, up to `parentCopiesNow`.
    public func parentCopiesDuring(parentCopiesNow: UInt64? = nil) -> UInt64? {
        guard let end = parentCopiesAtEnd ?? parentCopiesNow else { return nil }
        return end >= parentCopiesAtFork ? end - parentCopiesAtFork : 0
    }

    /// Pages the child copied before it exec'd: pure waste of a fork+exec.
    public var copiesBeforeExec: UInt64? { endedBy == .exec ? childCopiesAtEnd : nil }
}
