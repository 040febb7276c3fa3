import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writes a recording (layout: TraceFormat.swift, docs/trace-format.md).
///
/// The preamble and header block are written by `init`. Records collect in a
/// block of about `blockBytes` payload bytes that is written, with one
/// write(2), when full, on `flush()` and on `close()`. A recorder killed at
/// any moment therefore leaves every block before the one being written
/// intact; the reader reports such a file as cut (`TraceCut.noEndRecord`).
///
/// `append` does not throw: when a write fails (disk full, ...), the file is
/// cut back to its last whole block, the error is kept in `error`, later
/// records are dropped (counted in `recordsDropped`), and the next `flush()`
/// or `close()` throws it.
public final class TraceFileWriter {
    public let path: String
    public let blockBytes: Int
    /// Records in blocks written to the file (not those still buffered).
    public private(set) var recordsWritten = 0
    /// Bytes written to the file, preamble and header block included.
    public private(set) var bytesWritten = 0
    /// Blocks written to the file, header block included.
    public private(set) var blocksWritten = 0
    /// Records appended but not yet written.
    public var recordsBuffered: Int { encoder.recordCount }
    /// Records appended after a write failed (or after close), not written.
    public private(set) var recordsDropped = 0
    /// The first write error; thrown by the next flush() / close().
    public private(set) var error: TraceFileError? { didSet { failed = error != nil } }
    /// `error != nil`, read per record without copying the error.
    /// Unchecked exclusivity, like `closed`: read per record, and the writer
    /// is never used by two threads at once (its owner's lock, or one owner).
    @exclusivity(unchecked) private var failed = false

    private var fd: Int32
    private let encoder: TraceBlockEncoder
    private var sequence: UInt64 = 1
    @exclusivity(unchecked) private var closed = false

    /// Creates `path` (mode 0644) and writes the preamble and header block.
    /// Never follows a symbolic link. Without `overwrite`, an existing path is
    /// an error (`.exists`); with it, an existing file is truncated.
    public init(path: String, header: TraceHeader, blockBytes: Int = 64 << 10, overwrite: Bool = false) throws {
        self.path = path
        self.blockBytes = TraceFileWriter.clampBlockBytes(blockBytes)
        let prefix = encodeFilePrefix(header: header)
        let headerPayload = prefix.count - TraceFormat.preambleSize - TraceFormat.blockHeaderSize
        if headerPayload > TraceFormat.maxPayloadBytes {
            throw TraceFileError(path: path, problem: .headerTooLarge(bytes: headerPayload))
        }
        var flags = O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC
        flags |= overwrite ? O_TRUNC : O_EXCL
        var fd: Int32
        repeat { fd = open(path, flags, 0o644) } while fd < 0 && errno == EINTR
        if fd < 0 {
            throw TraceFileError(path: path, problem: TraceFileWriter.openProblem(errno: errno, path: path))
        }
        self.fd = fd
        self.encoder = TraceBlockEncoder(payloadCapacity: self.blockBytes)
        let failure = prefix.withUnsafeBytes { writeAll($0) }
        if let e = failure {
            Glibc.close(fd)
            // Remove the file only if this call created it (O_EXCL): never
            // unlink what was there before (with overwrite it may be a device).
            if !overwrite { unlink(path) }
            self.fd = -1
            closed = true
            throw TraceFileError(path: path, problem: TraceFileWriter.writeProblem(errno: e, operation: "write"))
        }
        bytesWritten = prefix.count
        blocksWritten = 1
    }

    deinit {
        if !closed {
            _ = writeBlock()
            Glibc.close(fd)
        }
    }

    /// Adds a record to the current block; writes the block when it is full.
    public func append(_ record: TraceRecord) {
        if closed || failed {
            if !failed { error = TraceFileError(path: path, problem: .closed) }
            recordsDropped += 1
            return
        }
        appended(at: encoder.append(record))
    }

    /// A `fault` record: what `append(.fault(FaultRecord(...)))` writes,
    /// without building the record (the recorder's per-event path).
    public func appendFault(time: UInt64, pid: Int32, tid: Int32, address: UInt64, ip: UInt64,
                            kind: RecordedFaultKind, faultClass: RecordedFaultClass, mapping: RecordedMappingKind) {
        if closed || failed { append(.fault(FaultRecord(time: time, pid: pid, tid: tid, address: address, ip: ip,
                                                         kind: kind, faultClass: faultClass, mapping: mapping))); return }
        appended(at: encoder.appendFault(time: time, pid: pid, tid: tid, address: address, ip: ip,
                                         kind: kind, faultClass: faultClass, mapping: mapping))
    }

    /// A `resolve` record: what `append(.resolve(ResolveRecord(...)))` writes.
    public func appendResolve(time: UInt64, pid: Int32, tid: Int32, address: UInt64, faultClass: RecordedFaultClass) {
        if closed || failed { append(.resolve(ResolveRecord(time: time, pid: pid, tid: tid, address: address,
                                                             faultClass: faultClass))); return }
        appended(at: encoder.appendResolve(time: time, pid: pid, tid: tid, address: address, faultClass: faultClass))
    }

    /// After a record was encoded at `start`: writes the block once full.
    @inline(__always)
    private func appended(at start: Int) {
        if encoder.payloadLength > blockBytes && encoder.recordCount > 1 {
            // Write the records before this one; this one starts the next block.
            let end = encoder.position
            encoder.position = start
            encoder.recordCount -= 1
            guard writeBlock() else { recordsDropped += 1; return }
            encoder.position = end
            encoder.keepOnly(from: start)
        }
        if encoder.payloadLength >= blockBytes { _ = writeBlock() }
    }

    /// Writes the current block (if it holds records) with one write(2), then
    /// fsyncs if asked. Throws the first write error since the writer opened.
    public func flush(fsync: Bool = false) throws {
        if let error = error { throw error }
        if closed { throw TraceFileError(path: path, problem: .closed) }
        _ = writeBlock()
        if let error = error { throw error }
        if fsync {
            var r: Int32
            repeat { r = Glibc.fsync(fd) } while r < 0 && errno == EINTR
            if r < 0 {
                let e = TraceFileError(path: path, problem: TraceFileWriter.writeProblem(errno: errno, operation: "fsync"))
                error = e
                throw e
            }
        }
    }

    /// Writes the current block and closes the file. Closing twice does nothing.
    public func close(fsync: Bool = false) throws {
        if closed { return }
        var failure: Error?
        do { try flush(fsync: fsync) } catch { failure = error }
        closed = true
        if Glibc.close(fd) < 0 && failure == nil {
            failure = TraceFileError(path: path, problem: TraceFileWriter.writeProblem(errno: errno, operation: "close"))
        }
        fd = -1
        if let failure = failure { throw failure }
    }

    // MARK: internals

    /// Seals and writes the current block. False (with `error` set) on failure.
    private func writeBlock() -> Bool {
        if error != nil { return false }
        guard encoder.recordCount > 0 else { return true }
        let block = encoder.seal(kind: TraceFormat.recordsBlockKind, sequence: sequence)
        let records = encoder.recordCount
        if let e = writeAll(block) {
            // Cut the file back to its last whole block, so that it stays readable.
            _ = ftruncate(fd, off_t(bytesWritten))
            _ = lseek(fd, off_t(bytesWritten), SEEK_SET)
            error = TraceFileError(path: path, problem: TraceFileWriter.writeProblem(errno: e, operation: "write"))
            recordsDropped += records
            encoder.reset()
            return false
        }
        bytesWritten += block.count
        blocksWritten += 1
        recordsWritten += records
        sequence += 1
        encoder.reset()
        return true
    }

    /// One write(2) for the whole buffer; continues only after a short write
    /// or EINTR. Returns errno on failure.
    private func writeAll(_ bytes: UnsafeRawBufferPointer) -> Int32? {
        guard var p = bytes.baseAddress else { return nil }
        var left = bytes.count
        while left > 0 {
            let n = Glibc.write(fd, p, left)
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            if n == 0 { return EIO }
            p += n
            left -= n
        }
        return nil
    }

    static func openProblem(errno e: Int32, path: String) -> TraceProblem {
        switch e {
        case EEXIST:
            var st = stat()
            if lstat(path, &st) == 0 {
                if (st.st_mode & S_IFMT) == S_IFLNK { return .symbolicLink }
                if (st.st_mode & S_IFMT) == S_IFDIR { return .isDirectory }
            }
            return .exists
        case ELOOP: return .symbolicLink
        case EACCES, EPERM: return .permissionDenied
        case EROFS: return .readOnlyFileSystem
        case ENOENT, ENOTDIR: return .noSuchDirectory
        case EISDIR: return .isDirectory
        case ENOSPC, EDQUOT: return .noSpace
        default: return .system(operation: "create", errno: e)
        }
    }

    static func writeProblem(errno e: Int32, operation: String) -> TraceProblem {
        switch e {
        case ENOSPC, EDQUOT: return .noSpace
        default: return .system(operation: operation, errno: e)
        }
    }
}
