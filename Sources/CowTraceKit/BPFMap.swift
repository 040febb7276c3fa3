import CBPF
#if canImport(Glibc)
import Glibc
#endif

/// A map of an opened `BPFObject`, found by name and checked once, right after
/// the object is opened: the map exists, and its key and value sizes are those
/// of `Key` and `Value` (per CPU for per-CPU maps; `valueElements` values of
/// `Value` for maps whose value is an array, such as a stack-trace map).
/// Sized before load (`setMaxEntries`), read and written after it.
/// Keeps the object alive; after `BPFObject.close()` every access throws.
struct BPFMap<Key, Value> {
    let name: String
    let object: BPFObject
    private let map: OpaquePointer
    /// The map is per CPU: each key holds one `Value` per possible CPU.
    let perCPU: Bool
    /// Values per key: the possible CPUs for per-CPU maps, else `valueElements`.
    let valuesPerKey: Int
    /// Bytes from one value to the next in a lookup buffer (per-CPU values are 8-byte aligned).
    private let valueStride: Int

    init(_ object: BPFObject, _ name: String, valueElements: Int = 1) throws {
        guard let map = bpf_object__find_map_by_name(object.handle, name) else {
            throw TracerError.unknownMap(map: name, object: object.name)
        }
        let type = bpf_map__type(map)
        if type == BPF_MAP_TYPE_RINGBUF {
            throw TracerError.mapTypeMismatch(map: name, object: object.name, expected: "a keyed map", found: "a ring buffer")
        }
        if type == BPF_MAP_TYPE_ARRAY_OF_MAPS || type == BPF_MAP_TYPE_HASH_OF_MAPS {
            throw TracerError.mapTypeMismatch(map: name, object: object.name, expected: "a keyed map of values",
                                              found: "a map of maps (its values are map descriptors)")
        }
        let keySize = Int(bpf_map__key_size(map))
        guard keySize == MemoryLayout<Key>.size else {
            throw TracerError.mapSizeMismatch(map: name, object: object.name, part: "key", bpfSize: keySize,
                                              swiftType: "\(Key.self)", swiftSize: MemoryLayout<Key>.size)
        }
        perCPU = [BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH,
                  BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE].contains(type)
        precondition(!perCPU || valueElements == 1, "per-CPU maps of arrays are not supported")
        let valueSize = Int(bpf_map__value_size(map))
        let swiftSize = MemoryLayout<Value>.size * valueElements
        guard valueSize == swiftSize else {
            throw TracerError.mapSizeMismatch(map: name, object: object.name, part: perCPU ? "per-CPU value" : "value",
                                              bpfSize: valueSize,
                                              swiftType: valueElements == 1 ? "\(Value.self)" : "\(valueElements) × \(Value.self)",
                                              swiftSize: swiftSize)
        }
        self.name = name
        self.object = object
        self.map = map
        valuesPerKey = perCPU ? Int(max(1, libbpf_num_possible_cpus())) : valueElements
        valueStride = perCPU ? (MemoryLayout<Value>.size + 7) & ~7 : MemoryLayout<Value>.stride
    }

    /// The map's key and value sizes as the BPF object declares them.
    var keySize: Int { Int(bpf_map__key_size(map)) }
    var valueSize: Int { Int(bpf_map__value_size(map)) }
    var maxEntries: UInt32 { bpf_map__max_entries(map) }

    /// Before load only: how many entries the kernel makes room for.
    func setMaxEntries(_ entries: UInt32) throws {
        guard !object.isClosed else { throw closedError("size") }
        let rc = bpf_map__set_max_entries(map, entries)
        if rc != 0 { throw TracerError.mapAccess(map: name, operation: "set max_entries \(entries) of", errno: Errno(rc)) }
    }

    /// The map's file descriptor (after load).
    func descriptor() throws -> Int32 {
        guard !object.isClosed else { throw closedError("use") }
        let fd = bpf_map__fd(map)
        guard fd >= 0 else {
            throw TracerError.mapAccess(map: name, operation: "use (the object \(object.name) is not loaded yet)", errno: Errno(EBADF))
        }
        return fd
    }

    /// The value(s) under `key`: one per CPU for per-CPU maps, `valueElements` for arrays.
    func values(_ key: Key) throws -> [Value] {
        let fd = try descriptor()
        var k = key
        let count = valuesPerKey, stride = valueStride
        return try withUnsafeTemporaryAllocation(byteCount: count * stride, alignment: 8) { buffer in
            let rc = bpf_map_lookup_elem(fd, &k, buffer.baseAddress)
            if rc != 0 { throw TracerError.mapAccess(map: name, operation: "read", errno: Errno(rc)) }
            return (0..<count).map { buffer.baseAddress!.loadUnaligned(fromByteOffset: $0 * stride, as: Value.self) }
        }
    }

    /// The value under `key` (the first CPU's on a per-CPU map), or nil if
    /// there is none or it cannot be read.
    func lookup(_ key: Key) -> Value? {
        guard let fd = try? descriptor() else { return nil }
        var k = key
        // The whole value: one per CPU on per-CPU maps, so the kernel never writes past it.
        return withUnsafeTemporaryAllocation(byteCount: valuesPerKey * valueStride, alignment: 8) { buffer in
            guard bpf_map_lookup_elem(fd, &k, buffer.baseAddress) == 0 else { return nil }
            return buffer.baseAddress!.loadUnaligned(as: Value.self)
        }
    }

    /// Writes one value (not on per-CPU or array-valued maps).
    func update(_ key: Key, _ value: Value, flags: UInt64 = UInt64(BPF_ANY)) throws {
        let fd = try descriptor()
        guard valuesPerKey == 1 else {
            throw TracerError.mapAccess(map: name, operation: "update one value (it holds \(valuesPerKey) per key)", errno: Errno(EINVAL))
        }
        var k = key, v = value
        let rc = bpf_map_update_elem(fd, &k, &v, flags)
        if rc != 0 { throw TracerError.mapAccess(map: name, operation: "update", errno: Errno(rc)) }
    }

    /// Removes `key`; false if it was not there (or the map is gone).
    @discardableResult
    func delete(_ key: Key) -> Bool {
        guard let fd = try? descriptor() else { return false }
        var k = key
        return bpf_map_delete_elem(fd, &k) == 0
    }

    /// Every key, in the kernel's iteration order.
    func keys() throws -> [Key] {
        let fd = try descriptor()
        let size = MemoryLayout<Key>.size
        return try withUnsafeTemporaryAllocation(byteCount: 2 * max(size, 1), alignment: 8) { buffer in
            let current = buffer.baseAddress!, next = buffer.baseAddress! + max(size, 1)
            var keys: [Key] = []
            var rc = bpf_map_get_next_key(fd, nil, next)
            while rc == 0 {
                keys.append(next.loadUnaligned(as: Key.self))
                current.copyMemory(from: next, byteCount: size)
                rc = bpf_map_get_next_key(fd, current, next)
            }
            if Errno(rc) != Errno.noEntry {
                throw TracerError.mapAccess(map: name, operation: "iterate", errno: Errno(rc))
            }
            return keys
        }
    }

    private func closedError(_ what: String) -> TracerError {
        TracerError.mapAccess(map: name, operation: "\(what) (the object \(object.name) was closed)", errno: Errno(EBADF))
    }
}

/// A ring-buffer map of an opened `BPFObject`, found and type-checked once.
struct BPFRingBufferMap {
    let name: String
    let object: BPFObject
    private let map: OpaquePointer

    init(_ object: BPFObject, _ name: String) throws {
        map = try object.libbpfMap(name, expected: "a ring buffer") { bpf_map__type($0) == BPF_MAP_TYPE_RINGBUF }
        self.name = name
        self.object = object
    }

    var maxEntries: UInt32 { bpf_map__max_entries(map) }

    /// Before load only: the ring's size in bytes (a power of two, at least a page).
    func setMaxEntries(_ bytes: UInt32) throws {
        try object.setMaxEntries(map, name, bytes, what: "the size")
    }

    func descriptor() throws -> Int32 {
        let fd = object.isClosed ? -1 : bpf_map__fd(map)
        guard fd >= 0 else {
            throw TracerError.mapAccess(map: name, operation: "use (the object \(object.name) is not loaded, or closed)", errno: Errno(EBADF))
        }
        return fd
    }
}

/// An array of ring buffers, one per possible CPU (BPF_MAP_TYPE_ARRAY_OF_MAPS
/// whose values are ring buffers), found and type-checked once. The BPF side
/// reserves in its own CPU's ring, so CPUs never contend for one ring's lock.
/// Sized before load; the rings are created and put in place after load,
/// before any program is attached (`createRings`).
struct BPFPerCPURingBuffers {
    let name: String
    let object: BPFObject
    private let map: OpaquePointer

    init(_ object: BPFObject, _ name: String) throws {
        map = try object.libbpfMap(name, expected: "an array of ring buffers") {
            bpf_map__type($0) == BPF_MAP_TYPE_ARRAY_OF_MAPS && bpf_map__inner_map($0).map(bpf_map__type) == BPF_MAP_TYPE_RINGBUF
        }
        self.name = name
        self.object = object
    }

    /// The array's slots (one per possible CPU once sized).
    var slots: Int { Int(bpf_map__max_entries(map)) }

    /// The CPUs the kernel may ever run on: one slot each.
    static var possibleCPUs: Int { Int(max(1, libbpf_num_possible_cpus())) }

    /// The CPUs online now: one ring each. A VM may list far more possible
    /// CPUs than it has (hotplug room); a CPU brought online later finds no
    /// ring, and its events are counted lost, never silently dropped.
    static func onlineCPUs() -> [Int] {
        let text = (try? String(contentsOfFile: "/sys/devices/system/cpu/online", encoding: .utf8)) ?? ""
        let cpus = parseCPUList(text).filter { $0 < possibleCPUs }
        return cpus.isEmpty ? Array(0..<possibleCPUs) : cpus
    }

    /// A kernel CPU list ("0-3,8,10-11") as its CPU numbers.
    static func parseCPUList(_ text: String) -> [Int] {
        text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",").flatMap { part -> [Int] in
            let bounds = part.split(separator: "-").compactMap { Int($0) }
            switch bounds.count {
            case 1: return [bounds[0]]
            case 2 where bounds[0] <= bounds[1]: return Array(bounds[0]...bounds[1])
            default: return []
            }
        }
    }

    /// The bytes of each CPU's ring for a budget of `totalBytes` over `cpus`
    /// CPUs: a power of two, at least a page, and at least 1 MiB unless the
    /// budget is smaller (a CPU that faults alone must not fill a tiny ring).
    static func bytesPerRing(totalBytes: UInt32, cpus: Int) -> UInt32 {
        let page = UInt32(getpagesize())
        let share = max(totalBytes / UInt32(max(cpus, 1)), min(totalBytes, 1 << 20), page)
        return 1 << (31 - share.leadingZeroBitCount)
    }

    /// Before load only: one slot per possible CPU.
    func setSlots(_ count: Int) throws {
        try object.setMaxEntries(map, name, UInt32(count), what: "the CPU count")
    }

    /// After load, before attach: a ring of `bytes` in the slot of each of
    /// `cpus`. The
    /// returned descriptors belong to the caller (`RingBuffer` reads them);
    /// the array keeps the rings alive as well.
    func createRings(bytes: UInt32, cpus: [Int]) throws -> PerCPURings {
        guard !object.isClosed, case let outer = bpf_map__fd(map), outer >= 0 else {
            throw TracerError.mapAccess(map: name, operation: "use (the object \(object.name) is not loaded, or closed)", errno: Errno(EBADF))
        }
        let rings = PerCPURings()
        for cpu in cpus.map(UInt32.init) where cpu < bpf_map__max_entries(map) {
            errno = 0
            let fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "\(name)_cpu\(cpu)", 0, 0, bytes, nil)
            guard fd >= 0 else {
                throw TracerError.mapAccess(map: name, operation: "create the \(bytes)-byte ring of CPU \(cpu) for", errno: Errno(fd))
            }
            rings.descriptors.append(fd)
            var key = cpu, value = fd
            let rc = bpf_map_update_elem(outer, &key, &value, UInt64(BPF_ANY))
            if rc != 0 { throw TracerError.mapAccess(map: name, operation: "insert the ring of CPU \(cpu) in", errno: Errno(rc)) }
        }
        return rings
    }
}

/// The per-CPU rings' descriptors, closed when released (the kernel frees a
/// ring once neither this nor the array holds it).
final class PerCPURings {
    fileprivate(set) var descriptors: [Int32] = []
    deinit { for fd in descriptors { Glibc.close(fd) } }
}

/// A program of an opened `BPFObject`, found once by name: attached, or run
/// by user space (BPF_PROG_TEST_RUN on a `SEC("syscall")` program).
struct BPFProgram {
    let name: String
    let object: BPFObject
    private let program: OpaquePointer

    init(_ object: BPFObject, _ name: String) throws {
        guard let program = bpf_object__find_program_by_name(object.handle, name) else {
            throw TracerError.unknownProgram(program: name, object: object.name)
        }
        self.name = name
        self.object = object
        self.program = program
    }

    /// Attaches the loaded program where its SEC() says.
    func attach(tier: AttachTier) throws -> BPFLink {
        guard !object.isClosed else { throw TracerError.attachFailed(tier: tier, program: name, errno: Errno(EBADF)) }
        errno = 0
        guard let link = bpf_program__attach(program) else {
            throw TracerError.attachFailed(tier: tier, program: name, errno: Errno.current)
        }
        return BPFLink(handle: link, program: name)
    }

    /// Runs the loaded program once with `context` as its argument; the
    /// kernel copies the context back, so outputs land in it.
    func run<Context>(context: inout Context) throws {
        let fd = object.isClosed ? -1 : bpf_program__fd(program)
        guard fd >= 0 else { throw TracerError.programRun(program: name, object: object.name, errno: Errno(EBADF)) }
        var opts = bpf_test_run_opts()
        opts.sz = MemoryLayout<bpf_test_run_opts>.size
        let rc = withUnsafeMutableBytes(of: &context) { ctx -> Int32 in
            opts.ctx_in = UnsafeRawPointer(ctx.baseAddress)
            opts.ctx_size_in = UInt32(ctx.count)
            return bpf_prog_test_run_opts(fd, &opts)
        }
        if rc != 0 { throw TracerError.programRun(program: name, object: object.name, errno: Errno(rc)) }
    }
}

extension BPFObject {
    /// The libbpf map `name` of this object, of the kind `isExpected` checks
    /// (else a type mismatch naming what was `expected`).
    func libbpfMap(_ name: String, expected: String, _ isExpected: (OpaquePointer) -> Bool) throws -> OpaquePointer {
        guard let map = bpf_object__find_map_by_name(handle, name) else {
            throw TracerError.unknownMap(map: name, object: self.name)
        }
        guard isExpected(map) else {
            throw TracerError.mapTypeMismatch(map: name, object: self.name, expected: expected,
                                              found: "map type \(bpf_map__type(map).rawValue)")
        }
        return map
    }

    /// Before load only: `map`'s max_entries (`what` it means, for the error).
    func setMaxEntries(_ map: OpaquePointer, _ name: String, _ entries: UInt32, what: String) throws {
        let rc = isClosed ? -EBADF : bpf_map__set_max_entries(map, entries)
        if rc != 0 { throw TracerError.mapAccess(map: name, operation: "set \(what) \(entries) of", errno: Errno(rc)) }
    }
}
