import CowTraceKit
import Foundation
import XCTest

/// The bcc layout of a log2 histogram, checked character for character
/// (the expected blocks were printed by libbpf-tools' print_log2_hist, with
/// the leading empty buckets left out), and the JSON and CSV schemas of
/// docs/exports.md.
final class HistogramRendererTests: XCTestCase {
    private func histogram(_ counts: [Int: UInt64], sum: UInt64 = 0) -> Log2Histogram {
        var h = Log2Histogram()
        for (i, c) in counts { h.buckets[i] = c }
        h.count = counts.values.reduce(0, +)
        h.sum = sum
        return h
    }

    func testNarrowHistogramIsBccsLayoutWithEmptyEndsTrimmed() {
        let text = HistogramRenderer.log2Text(histogram([2: 1, 3: 5, 4: 20, 6: 2]), valueType: "copies")
        XCTAssertEqual(text, """
                 copies              : count    distribution
                     4 -> 7          : 1        |**                                      |
                     8 -> 15         : 5        |**********                              |
                    16 -> 31         : 20       |****************************************|
                    32 -> 63         : 0        |                                        |
                    64 -> 127        : 2        |****                                    |

            """)
    }

    func testBucketZeroHoldsZeroAndOne() {
        let text = HistogramRenderer.log2Text(histogram([0: 3, 1: 7]), valueType: "ns")
        XCTAssertEqual(text, """
                 ns                  : count    distribution
                     0 -> 1          : 3        |*****************                       |
                     2 -> 3          : 7        |****************************************|

            """)
    }

    func testBeyondBucket32RangesAreWiderAndTheBarHalf() {
        let text = HistogramRenderer.log2Text(histogram([33: 1, 35: 123_456_789]), valueType: "bytes")
        XCTAssertEqual(text, """
                           bytes                         : count    distribution
                      8589934592 -> 17179869183          : 1        |                    |
                     17179869184 -> 34359738367          : 0        |                    |
                     34359738368 -> 68719476735          : 123456789 |********************|

            """)
    }

    func testLastBucketEndsAtUInt64Max() {
        let text = HistogramRenderer.log2Text(histogram([62: 1, 63: 2]), valueType: "bytes")
        XCTAssertEqual(text, """
                           bytes                         : count    distribution
             4611686018427387904 -> 9223372036854775807  : 1        |**********          |
             9223372036854775808 -> 18446744073709551615 : 2        |********************|

            """)
    }

    func testEmptyHistogramPrintsNothing() {
        XCTAssertEqual(HistogramRenderer.log2Text(Log2Histogram(), valueType: "ns"), "")
    }

    private func processes() -> [ProcessHistograms] {
        [
            ProcessHistograms(pid: 1234, comm: "redis-server", histograms: [
                .copiesPerInterval: histogram([3: 2, 5: 1], sum: 60),
                .offsetInMapping(.heap): histogram([12: 4], sum: 20000),
                .copyLatency: Log2Histogram(), // empty: left out
            ]),
            ProcessHistograms(pid: 7, comm: "a,\"b\"", histograms: [.copyLatency: histogram([10: 1], sum: 1500)]),
            ProcessHistograms(pid: 8, comm: "idle", histograms: [:]),
        ]
    }

    func testTextHasATitlePerProcessAndKind() {
        var renderer = HistogramRenderer(format: .text)
        let text = renderer.render(processes(), at: Date(timeIntervalSince1970: 0))
        XCTAssertEqual(text, """
            pid 1234 (redis-server) copies-per-interval (copies)
                 copies              : count    distribution
                     8 -> 15         : 2        |****************************************|
                    16 -> 31         : 0        |                                        |
                    32 -> 63         : 1        |********************                    |

            pid 1234 (redis-server) offset-in-heap (bytes)
                 bytes               : count    distribution
                  4096 -> 8191       : 4        |****************************************|

            pid 7 (a,"b") copy-latency (ns)
                 ns                  : count    distribution
                  1024 -> 2047       : 1        |****************************************|


            """)
    }

    func testJSONSchema() throws {
        var renderer = HistogramRenderer(format: .json)
        let line = renderer.render(processes(), at: Date(timeIntervalSince1970: 0))
        XCTAssertEqual(line, """
            {"schema_version":1,"time":"1970-01-01T00:00:00.000Z","processes":[\
            {"pid":1234,"comm":"redis-server","histograms":[\
            {"kind":"copies-per-interval","mapping":null,"unit":"copies","count":3,"sum":60,"buckets":[\
            {"bucket":3,"low":8,"high":15,"count":2},{"bucket":5,"low":32,"high":63,"count":1}]},\
            {"kind":"offset-in-mapping","mapping":"heap","unit":"bytes","count":4,"sum":20000,"buckets":[\
            {"bucket":12,"low":4096,"high":8191,"count":4}]}]},\
            {"pid":7,"comm":"a,\\"b\\"","histograms":[\
            {"kind":"copy-latency","mapping":null,"unit":"ns","count":1,"sum":1500,"buckets":[\
            {"bucket":10,"low":1024,"high":2047,"count":1}]}]}]}

            """)
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(line.utf8)))
    }

    func testCSVSchemaHeaderOnceAndQuoting() {
        var renderer = HistogramRenderer(format: .csv)
        let first = renderer.render(processes(), at: Date(timeIntervalSince1970: 0))
        XCTAssertEqual(first, #"""
            time,pid,comm,kind,mapping,unit,bucket,low,high,count,hist_count,hist_sum
            1970-01-01T00:00:00.000Z,1234,redis-server,copies-per-interval,,copies,3,8,15,2,3,60
            1970-01-01T00:00:00.000Z,1234,redis-server,copies-per-interval,,copies,5,32,63,1,3,60
            1970-01-01T00:00:00.000Z,1234,redis-server,offset-in-mapping,heap,bytes,12,4096,8191,4,4,20000
            1970-01-01T00:00:00.000Z,7,"a,""b""",copy-latency,,ns,10,1024,2047,1,1,1500

            """#)
        let second = renderer.render(processes(), at: Date(timeIntervalSince1970: 0))
        XCTAssertFalse(second.contains("time,pid"))
        XCTAssertEqual(second.split(separator: "\n").count, 4)
    }

    func testTitleLine() {
        XCTAssertEqual(HistogramRenderer.title(pid: 1234, comm: "redis-server", kind: .copiesPerInterval),
                       "pid 1234 (redis-server) copies-per-interval (copies)")
        XCTAssertEqual(HistogramRenderer.title(pid: 1, comm: "init", kind: .offsetInMapping(.filePrivate)),
                       "pid 1 (init) offset-in-file-private (bytes)")
    }
}
