#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Physical memory: one slot per 4 KiB frame in flat arrays, so that no frame
/// is an object. This is the model's `struct page`/`struct folio`.
///
/// Frame 0 is the shared zero page (`ZERO_PAGE(0)`), frames 512…1023 the huge
/// zero page; neither is ever freed nor counted as used. Counts are kept per
/// 4 KiB frame even inside a huge page (a PMD mapping adds one map and one
/// reference to each of its 512 frames), which keeps a split cheap and exact.
public final class FrameTable {
    public struct Flags: OptionSet, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// PageAnon: belongs to an anon_vma, not to a file.
        public static let anon = Flags(rawValue: 1 << 0)
        /// PageAnonExclusive: exactly one process may write it without a copy.
        public static let anonExclusive = Flags(rawValue: 1 << 1)
        /// PageKsm: merged by KSM; a write always copies it.
        public static let ksm = Flags(rawValue: 1 << 2)
        /// In a file's page cache (file or shmem page).
        public static let pageCache = Flags(rawValue: 1 << 3)
        /// Shmem/tmpfs page (counted as MM_SHMEMPAGES).
        public static let shmem = Flags(rawValue: 1 << 4)
        /// Part of a huge (2 MiB) allocation.
        public static let huge = Flags(rawValue: 1 << 5)
        /// PG_dirty on a page-cache page.
        public static let dirty = Flags(rawValue: 1 << 6)
    }

    /// GUP_PIN_COUNTING_BIAS: a FOLL_PIN adds this to the refcount.
    public static let pinBias: Int32 = 1024
    public static let zeroPage = 0
    public static let hugeZeroPage = 512
    static let reservedFrames = 1024

    public let capacity: Int
    /// The per-frame fields a fault touches, packed in one 16-byte record so
    /// that a fault touches one cache line per frame, not one per field, and
    /// a large snapshot costs 16 bytes a frame here. (The page's contents,
    /// rarely set, are a column of their own: `contents`.)
    struct State {
        var refcount: Int32 = 0
        var mapcount: Int32 = 0
        /// Owner mapping: the pid whose anon_vma the page joined, or the file id.
        var owner: Int32 = 0
        var flags: UInt8 = 0
        var reserved: UInt8 = 0
        /// Memory cgroup the page is charged to (0 = root, no limit).
        var memcg: UInt16 = 0
    }
    static let stride = MemoryLayout<State>.stride
    let states: UnsafeMutablePointer<State>
    // Column views over `states`, so code reads `frames.refcount[f]` as with separate arrays.
    let refcount: Int32Field
    let mapcount: Int32Field
    let owner: Int32Field
    let flags: UInt8Field
    let memcg: UInt16Field
    /// One word of page contents, so copies can be told apart from the
    /// original. Only file pages and explicit writes set one: the column is
    /// allocated at the first nonzero value, and zeros never touch it.
    let contents: LazyUInt64Column
    /// Page offset inside the owning file, for page-cache pages (cold, so kept apart).
    let fileIndex: UnsafeMutablePointer<Int32>
    /// Allocator state behind a pointer (no exclusivity checks on the hot path).
    /// The free frames are a stack linked through their own records (a free
    /// frame's `owner` holds the next free frame + 1, 0 at the bottom), as the
    /// buddy allocator links free pages through `page->lru`: freeing a
    /// process's pages writes only the records `zap` already touched, where a
    /// separate array of free frame numbers cost 4 more bytes a frame, first
    /// touched at the last exit.
    let cursor: UnsafeMutablePointer<(freeHead: Int, nextUnused: Int)>
    /// Frames above this index were never handed out.
    var nextUnused: Int { get { cursor.pointee.nextUnused } set { cursor.pointee.nextUnused = newValue } }

    /// Bytes of simulator memory per simulated frame: the packed record and
    /// the file index (and 8 more for a frame given contents).
    public static let bytesPerFrame = MemoryLayout<State>.stride + 4

    init(frames: Int) {
        let capacity = max(frames, 0) + FrameTable.reservedFrames + Paging.hugePageFrames
        self.capacity = capacity
        // calloc: the OS hands out zeroed memory lazily, so a large machine costs nothing until used.
        states = calloc(capacity, FrameTable.stride)!.bindMemory(to: State.self, capacity: capacity)
        let raw = UnsafeMutableRawPointer(states)
        refcount = Int32Field(base: raw + MemoryLayout<State>.offset(of: \State.refcount)!)
        mapcount = Int32Field(base: raw + MemoryLayout<State>.offset(of: \State.mapcount)!)
        owner = Int32Field(base: raw + MemoryLayout<State>.offset(of: \State.owner)!)
        flags = UInt8Field(base: raw + MemoryLayout<State>.offset(of: \State.flags)!)
        memcg = UInt16Field(base: raw + MemoryLayout<State>.offset(of: \State.memcg)!)
        contents = LazyUInt64Column(capacity: capacity)
        fileIndex = calloc(capacity, 4)!.bindMemory(to: Int32.self, capacity: capacity)
        cursor = .allocate(capacity: 1)
        cursor.initialize(to: (-1, FrameTable.reservedFrames))
        states[FrameTable.zeroPage].refcount = 1
        states[FrameTable.hugeZeroPage].refcount = 1
    }

    deinit {
        free(states); free(fileIndex)
        contents.deallocate()
        cursor.deallocate()
    }

    /// Takes one frame, or returns -1 when the index space is exhausted.
    @inline(__always)
    func allocate() -> Int {
        let head = cursor.pointee.freeHead
        if head >= 0 {
            // The last frame freed: its record holds the next one down (+ 1).
            cursor.pointee.freeHead = Int(states[head].owner) &- 1
            states[head].owner = 0
            return head
        }
        guard nextUnused < capacity else { return -1 }
        nextUnused += 1
        return nextUnused - 1
    }

    /// Takes 512 contiguous, 2 MiB-aligned frames, or -1 (no compaction: only never-used frames qualify).
    func allocateHuge() -> Int {
        let start = (nextUnused + Paging.hugePageFrames - 1) & ~(Paging.hugePageFrames - 1)
        guard start + Paging.hugePageFrames <= capacity else { return -1 }
        // The frames skipped for alignment go to the free list.
        while nextUnused < start { release(nextUnused); nextUnused += 1 }
        nextUnused = start + Paging.hugePageFrames
        return start
    }

    /// Returns one frame to the allocator and clears its state.
    @inline(__always)
    func release(_ frame: Int) {
        states[frame] = State(owner: Int32(truncatingIfNeeded: cursor.pointee.freeHead &+ 1))
        contents[frame] = 0
        cursor.pointee.freeHead = frame
    }

    @inline(__always) func has(_ frame: Int, _ flag: Flags) -> Bool { flags[frame] & flag.rawValue != 0 }
    @inline(__always) func set(_ frame: Int, _ flag: Flags) { flags[frame] |= flag.rawValue }
    @inline(__always) func clear(_ frame: Int, _ flag: Flags) { flags[frame] &= ~flag.rawValue }
}

/// What a frame looks like from outside, for tests, replay and the CLI.
public struct FrameInfo: Equatable, Sendable {
    public var frame: Int
    public var refcount: Int
    public var mapcount: Int
    public var isAnon: Bool
    public var isAnonExclusive: Bool
    public var isKSM: Bool
    public var isZeroPage: Bool
    public var isPageCache: Bool
    public var isHuge: Bool
    public var owner: Int
    public var contents: UInt64
}

// One column of FrameTable.State, indexed by frame number. Concrete types, not
// a generic, so that debug builds stay fast too.
struct Int32Field {
    let base: UnsafeMutableRawPointer
    @inline(__always) subscript(_ f: Int) -> Int32 {
        get { base.load(fromByteOffset: f &* FrameTable.stride, as: Int32.self) }
        nonmutating set { base.storeBytes(of: newValue, toByteOffset: f &* FrameTable.stride, as: Int32.self) }
    }
}

struct UInt8Field {
    let base: UnsafeMutableRawPointer
    @inline(__always) subscript(_ f: Int) -> UInt8 {
        get { base.load(fromByteOffset: f &* FrameTable.stride, as: UInt8.self) }
        nonmutating set { base.storeBytes(of: newValue, toByteOffset: f &* FrameTable.stride, as: UInt8.self) }
    }
}

struct UInt16Field {
    let base: UnsafeMutableRawPointer
    @inline(__always) subscript(_ f: Int) -> UInt16 {
        get { base.load(fromByteOffset: f &* FrameTable.stride, as: UInt16.self) }
        nonmutating set { base.storeBytes(of: newValue, toByteOffset: f &* FrameTable.stride, as: UInt16.self) }
    }
}

/// A column of one word per frame, allocated (zeroed, lazily backed by the
/// OS) when the first nonzero value is stored. A zero stored where a zero is
/// leaves the memory untouched, so frames that never get a value cost nothing.
struct LazyUInt64Column {
    private let column: UnsafeMutablePointer<UnsafeMutablePointer<UInt64>?>
    private let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        column = .allocate(capacity: 1)
        column.initialize(to: nil)
    }

    /// Whether a nonzero value was ever stored (the column exists).
    var isAllocated: Bool { column.pointee != nil }

    func deallocate() {
        free(column.pointee)
        column.deallocate()
    }

    @inline(__always) subscript(_ f: Int) -> UInt64 {
        get { column.pointee?[f] ?? 0 }
        nonmutating set {
            if let c = column.pointee {
                if c[f] != newValue { c[f] = newValue }
            } else if newValue != 0 {
                allocate()[f] = newValue
            }
        }
    }

    @inline(never)
    private func allocate() -> UnsafeMutablePointer<UInt64> {
        let c = calloc(capacity, 8)!.bindMemory(to: UInt64.self, capacity: capacity)
        column.pointee = c
        return c
    }
}
