import CowTraceFormat

/// The replay's bookkeeping per snapshot page (a present page of a pageRun
/// record), kept small: a large process's snapshot has millions of pages,
/// and the model itself needs 24 bytes for each (an 8-byte PTE and a 16-byte
/// frame record). Here a page costs one bit (`PageBitmapSet`), and a frame
/// number seen in several traced processes 4 bytes (`SharedFrameNumbers`).
extension TraceReplayer {
    /// A set of (pid, page) pairs as one 512-bit bitmap per pid and 2 MiB of
    /// address space: about 1/8 byte per page of a dense snapshot, against
    /// 21 to 43 bytes in a `Set`.
    struct PageBitmapSet {
        struct ChunkKey: Hashable {
            var pid: Int32
            var chunk: UInt64
        }
        /// Chunk → index of its first word in `words` (8 words per chunk).
        private var chunks: [ChunkKey: Int] = [:]
        private var words: [UInt64] = []
        /// The pids with a chunk, while they are few (most faults are of
        /// processes forked since, with none: no hashing for them); nil once many.
        private var fewPids: [Int32]? = []
        /// The chunk `remove` last looked up and its first word (-1: none):
        /// first touches come in runs through one chunk. `insert` forgets it.
        private var lastKey = ChunkKey(pid: -1, chunk: .max)
        private var lastBase = -1

        var isEmpty: Bool { chunks.isEmpty }

        mutating func insert(pid: Int32, page: UInt64) {
            if let few = fewPids, few.last != pid, !few.contains(pid) {
                fewPids = few.count < 8 ? few + [pid] : nil
            }
            let key = ChunkKey(pid: pid, chunk: page >> 21)
            lastKey = ChunkKey(pid: -1, chunk: .max)
            let base: Int
            if let b = chunks[key] {
                base = b
            } else {
                base = words.count
                words.append(contentsOf: repeatElement(0, count: 8))
                chunks[key] = base
            }
            let bit = Int((page >> 12) & 511)
            words[base + bit >> 6] |= 1 << UInt64(bit & 63)
        }

        /// Removes the pair; returns whether it was in the set.
        @inline(__always)
        mutating func remove(pid: Int32, page: UInt64) -> Bool {
            guard !chunks.isEmpty, fewPids?.contains(pid) ?? true else { return false }
            let key = ChunkKey(pid: pid, chunk: page >> 21)
            if key != lastKey {
                lastKey = key
                lastBase = chunks[key] ?? -1
            }
            let base = lastBase
            guard base >= 0 else { return false }
            let bit = Int((page >> 12) & 511)
            let mask: UInt64 = 1 << UInt64(bit & 63)
            guard words[base + bit >> 6] & mask != 0 else { return false }
            words[base + bit >> 6] &= ~mask
            return true
        }
    }

    /// The kernel frame numbers that several traced processes' snapshots map
    /// (non-exclusive anonymous pages), and for each the simulated frame it
    /// became. Built from the pageRun records' frame runs, not per page: the
    /// frame numbers covered by at least two runs, as sorted disjoint
    /// intervals, with one 4-byte slot per frame number in them.
    struct SharedFrameNumbers {
        /// Sorted, disjoint [start, end) intervals of frame numbers mapped at least twice.
        private var starts: [UInt64] = []
        private var ends: [UInt64] = []
        /// Index in `frames` of each interval's first frame number.
        private var offsets: [Int] = []
        /// The simulated frame for each frame number in the intervals (-1: none yet).
        private var frames: [Int32] = []

        /// From the frame runs [runStarts[i], runEnds[i]) of every qualifying
        /// page (a frame number covered twice is shared), in any order, none empty.
        init(runStarts: consuming [UInt64], runEnds: consuming [UInt64]) {
            guard runStarts.count >= 2 else { return }
            // The runs' starts and ends, each sorted, merged as +1 and -1 events (an end first at a tie).
            runStarts.sort()
            runEnds.sort()
            var depth = 0, s = 0, e = 0
            var openedAt: UInt64? = nil
            while e < runEnds.count {
                let at: UInt64
                if s < runStarts.count, runStarts[s] < runEnds[e] {
                    at = runStarts[s]
                    s += 1
                    depth += 1
                } else {
                    at = runEnds[e]
                    e += 1
                    depth -= 1
                }
                if depth >= 2, openedAt == nil {
                    openedAt = at
                } else if depth < 2, let start = openedAt {
                    openedAt = nil
                    guard start < at else { continue }
                    if let last = ends.last, last == start {
                        ends[ends.count - 1] = at
                    } else {
                        starts.append(start)
                        ends.append(at)
                    }
                }
            }
            runStarts = []
            runEnds = []
            var total = 0
            for i in starts.indices {
                offsets.append(total)
                total += Int(ends[i] - starts[i])
            }
            frames = [Int32](repeating: -1, count: total)
        }

        /// The slot of a frame number mapped at least twice; nil for one mapped once or never.
        func slot(_ pfn: UInt64) -> Int? {
            guard !starts.isEmpty else { return nil }
            var lo = 0, hi = starts.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if ends[mid] <= pfn { lo = mid + 1 } else { hi = mid }
            }
            guard lo < starts.count, starts[lo] <= pfn else { return nil }
            return offsets[lo] + Int(pfn - starts[lo])
        }

        func frame(at slot: Int) -> Int? { frames[slot] < 0 ? nil : Int(frames[slot]) }
        mutating func setFrame(_ frame: Int, at slot: Int) { frames[slot] = Int32(truncatingIfNeeded: frame) }
    }
}
