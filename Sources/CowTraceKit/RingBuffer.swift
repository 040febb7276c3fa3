import CBPF
#if canImport(Glibc)
import Glibc
#endif

/// BPF ring buffers read through libbpf: each record is decoded as `Record`
/// (shorter ones are skipped), or handed over raw, from `poll` and
/// `consume`. Freed when released.
final class RingBuffer {
    private let receive: (UnsafeMutableRawPointer, Int) -> Void
    private var handle: OpaquePointer?
    /// With several rings: the records of one poll or consume, handed over
    /// in time order at its end.
    private var merger: TimeMerger?
    private let deliver: (UnsafeRawBufferPointer) -> Void
    private let unpack: (UnsafeRawBufferPointer, (UnsafeRawBufferPointer) -> Void) -> Void

    convenience init<Record>(map: BPFRingBufferMap, as _: Record.Type, deliver: @escaping (Record) -> Void) throws {
        try self.init(map: map, raw: { bytes in
            guard bytes.count >= MemoryLayout<Record>.size, let base = bytes.baseAddress else { return }
            deliver(base.loadUnaligned(as: Record.self))
        })
    }

    /// Hands each record over as raw bytes, valid only during the call.
    convenience init(map: BPFRingBufferMap, raw deliver: @escaping (UnsafeRawBufferPointer) -> Void) throws {
        try self.init(name: map.name, descriptors: [map.descriptor()], raw: deliver)
    }

    /// One reader over several rings (one per CPU). libbpf reads them one
    /// after the other; the records of one `poll` or `consume` are handed
    /// over merged by their time (every record starts with its
    /// bpf_ktime_get_ns as a u64), so readers see one stream, as from a
    /// single ring.
    /// `unpack` turns one ring record into the records handed over (a batch
    /// of events into its events); by default each record is its own.
    init(name: String, descriptors: [Int32],
         unpack: @escaping (UnsafeRawBufferPointer, (UnsafeRawBufferPointer) -> Void) -> Void = { $1($0) },
         raw deliver: @escaping (UnsafeRawBufferPointer) -> Void) throws {
        self.deliver = deliver
        self.unpack = unpack
        if descriptors.count > 1 {
            let merger = TimeMerger()
            self.merger = merger
            receive = { data, size in merger.add(UnsafeRawBufferPointer(start: data, count: size), unpack: unpack) }
        } else {
            receive = { data, size in unpack(UnsafeRawBufferPointer(start: data, count: size), deliver) }
        }
        let callback: ring_buffer_sample_fn = { ctx, data, size in
            guard let ctx, let data else { return 0 }
            Unmanaged<RingBuffer>.fromOpaque(ctx).takeUnretainedValue().receive(data, size)
            return 0
        }
        let context = Unmanaged.passUnretained(self).toOpaque()
        guard let first = descriptors.first else {
            throw TracerError.mapAccess(map: name, operation: "open the ring buffers (none were created) of", errno: Errno(EINVAL))
        }
        errno = 0
        guard let rb = ring_buffer__new(first, callback, context, nil) else {
            throw TracerError.mapAccess(map: name, operation: "open ring buffer", errno: Errno.current)
        }
        handle = rb
        for fd in descriptors.dropFirst() {
            let rc = ring_buffer__add(rb, fd, callback, context)
            if rc != 0 { throw TracerError.mapAccess(map: name, operation: "open ring buffer", errno: Errno(rc)) }
        }
    }

    /// Waits up to `timeoutMilliseconds`; returns how many records were handled.
    func poll(timeoutMilliseconds: Int32) -> Int {
        guard let rb = handle else { return 0 }
        let n = ring_buffer__poll(rb, timeoutMilliseconds)
        merger?.drain(deliver)
        return n < 0 ? 0 : Int(n)
    }

    /// Hands over `record` as if it had come from a ring (unpacked, and in
    /// time order with the others when several rings are merged).
    func inject(_ record: UnsafeRawBufferPointer) {
        if let merger {
            merger.add(record, unpack: unpack)
            merger.drain(deliver)
        } else {
            unpack(record, deliver)
        }
    }

    /// Reads what is there without waiting.
    func consume() -> Int {
        guard let rb = handle else { return 0 }
        let n = ring_buffer__consume(rb)
        merger?.drain(deliver)
        return n < 0 ? 0 : Int(n)
    }

    deinit {
        if let rb = handle { ring_buffer__free(rb) }
    }
}

/// Records from several rings, kept until `drain` hands them over ordered by
/// the u64 time they start with (ties in arrival order). Records that
/// already arrive in order (one CPU busy) are not sorted; two runs in order
/// (two CPUs' rings, read one after the other) are merged, not sorted.
final class TimeMerger {
    private struct Entry {
        var time: UInt64
        var offset: Int
        var count: Int
    }
    // Unchecked exclusivity: one reader thread adds and drains, per record.
    @exclusivity(unchecked) private var bytes: [UInt8] = []
    @exclusivity(unchecked) private var entries: [Entry] = []
    /// Where the entries' runs in time order begin, after the first (at 0).
    @exclusivity(unchecked) private var runStarts: [Int] = []

    /// Keeps the records `unpack` finds in one ring record, copying the ring
    /// record once.
    func add(_ record: UnsafeRawBufferPointer,
             unpack: (UnsafeRawBufferPointer, (UnsafeRawBufferPointer) -> Void) -> Void) {
        guard let start = record.baseAddress else { return }
        let base = bytes.count
        bytes.append(contentsOf: record)
        unpack(record) { part in
            guard part.count >= 8, let p = part.baseAddress else { return }
            let time = p.loadUnaligned(as: UInt64.self)
            if let last = entries.last, last.time > time { runStarts.append(entries.count) }
            entries.append(Entry(time: time, offset: base + (p - start), count: part.count))
        }
    }

    func drain(_ deliver: (UnsafeRawBufferPointer) -> Void) {
        guard !entries.isEmpty else { return }
        if runStarts.count > 1 {
            // Stable (Swift's sort is): equal times keep their arrival order.
            entries.sort { $0.time < $1.time }
        }
        bytes.withUnsafeBytes { all in
            guard let base = all.baseAddress else { return }
            entries.withUnsafeBufferPointer { e in
                @inline(__always) func hand(_ x: Entry) { deliver(UnsafeRawBufferPointer(start: base + x.offset, count: x.count)) }
                guard runStarts.count == 1, let middle = runStarts.first else {
                    for x in e { hand(x) }
                    return
                }
                // Two runs in order: merge them, the first's on ties (as a
                // stable sort of the two, one after the other, would).
                var i = 0, j = middle
                while i < middle && j < e.count {
                    if e[j].time < e[i].time { hand(e[j]); j += 1 } else { hand(e[i]); i += 1 }
                }
                while i < middle { hand(e[i]); i += 1 }
                while j < e.count { hand(e[j]); j += 1 }
            }
        }
        entries.removeAll(keepingCapacity: true)
        bytes.removeAll(keepingCapacity: true)
        runStarts.removeAll(keepingCapacity: true)
    }
}
