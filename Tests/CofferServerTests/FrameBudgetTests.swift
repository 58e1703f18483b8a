import Testing

@testable import CofferServer

@Suite struct FrameBudgetTests {
    @Test func largeFramesShareABoundedBudget() {
        let budget = FrameBudget(limit: 100, threshold: 10)
        var held: [FrameReservation] = []
        for _ in 0..<4 { held.append(budget.reserve(25)!) }
        #expect(budget.inUse == 100)
        #expect(budget.reserve(11) == nil)
        // Small frames never need a share.
        #expect(budget.reserve(10) != nil)
        #expect(budget.inUse == 100)
        held.removeLast()
        #expect(budget.inUse == 75)
        #expect(budget.reserve(25) != nil)  // released again at once: nothing holds it
        #expect(budget.inUse == 75)
        held.removeAll()
        #expect(budget.inUse == 0)
    }

    @Test func aFrameCarriesItsReservationUntilDropped() {
        let budget = FrameBudget(limit: 100, threshold: 0)
        var frame: Frame? = Frame(bytes: .init(), reservation: budget.reserve(60)!)
        #expect(budget.reserve(50) == nil)
        _ = frame
        frame = nil
        #expect(budget.inUse == 0)
    }
}
