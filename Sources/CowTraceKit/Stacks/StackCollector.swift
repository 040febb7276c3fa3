import CowTraceSymbols
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `--stacks FILE`: keeps every traced process's mappings while it lives and
/// writes the copies per user stack as folded stacks at the end.
///
/// Processes often exit before anything could read their maps: the tracer
/// must send process events (`TracerOptions.processEvents`). An exec wakes
/// this collector's thread, which reads the new program's maps at once; a
/// fork gives the child its parent's maps.
public final class StackCollector {
    private let tracer: CowTracer
    private let output: OutputFile
    private let symbolizer = StackSymbolizer()
    private let lock = NSLock()
    private var lastPoll: UInt64 = 0
    private var comms: [Int32: String] = [:]
    private var thread: Thread?
    private var stopping = false

    /// Opens (creates) `path` now, so a bad path fails before tracing starts.
    public init(tracer: CowTracer, path: String) throws {
        self.tracer = tracer
        output = try OutputFile(path: path)
        try tracer.onEvent { [unowned self] event in self.handle(event) }
        let t = Thread { [unowned self] in
            while !self.lock.withLock({ self.stopping }) { self.tracer.pollEvents(timeoutMilliseconds: 50) }
        }
        t.start()
        thread = t
    }

    private func handle(_ event: FaultEvent) {
        lock.withLock {
            switch event.kind {
            case .exec?:
                symbolizer.forget(pid: event.pid)
                symbolizer.remember(pid: event.pid)
                comms[event.pid] = event.comm
            case .fork?:
                symbolizer.inherit(child: event.otherPID, from: event.pid)
                comms[event.otherPID] = event.comm
            default:
                break
            }
        }
    }

    /// Caches the mappings of processes seen since the last call (at most
    /// every 50 ms): those found running, and any an event missed.
    public func poll() {
        let now = MonotonicClock.nanoseconds()
        guard now - lastPoll >= 50_000_000 else { return }
        lastPoll = now
        guard let info = try? tracer.snapshot().info else { return }
        lock.withLock {
            for (pid, identity) in info.sorted(by: { $0.key < $1.key }) {
                if !identity.comm.isEmpty, comms[pid] == nil { comms[pid] = identity.comm }
                if !symbolizer.knows(pid: pid) { symbolizer.inherit(child: pid, from: identity.ppid) }
            }
        }
    }

    private func stopThread() {
        lock.withLock { stopping = true }
        while thread?.isFinished == false { usleep(5_000) }
        thread = nil
    }

    deinit { stopThread() }

    /// Writes the folded stacks; returns how many distinct stacks and copies.
    @discardableResult
    public func finish() throws -> (stacks: Int, copies: UInt64) {
        stopThread()
        tracer.pollEvents(timeoutMilliseconds: 0)
        lastPoll = 0
        poll()
        let stacks = try tracer.stackCounts()
        let text = FoldedStacks.render(stacks, symbolizer: symbolizer) { [comms] in comms[$0] ?? "pid \($0)" }
        try output.write(text)
        try output.close()
        return (stacks.count, stacks.reduce(0) { $0 + $1.copies })
    }
}

/// A file the user named for output: created without following a symlink,
/// mode 0644, truncated; errors are one line naming the path and the fix.
public final class OutputFile {
    public let path: String
    private var fd: Int32

    public init(path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let e = errno
            let why: String
            switch e {
            case ELOOP: why = "is a symbolic link (not followed, for safety): remove it or choose another path"
            case EACCES, EPERM: why = "permission denied: choose a writable path"
            case ENOENT: why = "its directory does not exist: create it or choose another path"
            case EISDIR: why = "is a directory: name a file"
            case EROFS: why = "is on a read-only file system: choose another path"
            default: why = String(cString: strerror(e)) + ": choose another path"
            }
            throw TracerError.output(path: path, problem: why)
        }
    }

    public func write(_ text: String) throws {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw TracerError.output(path: path, problem: String(cString: strerror(errno)) + " while writing: free space or choose another path")
            }
            bytes = bytes.dropFirst(n)
        }
    }

    public func close() throws {
        guard fd >= 0 else { return }
        let rc = Glibc.close(fd)
        fd = -1
        if rc != 0 { throw TracerError.output(path: path, problem: String(cString: strerror(errno)) + " on close") }
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }
}
