import CofferCrypto
import CofferTestSupport
import Testing

@Suite struct SecretBytesTests {
    @Test func neverPrintsItsBytes() {
        let canary = Canary()
        let secret = canary.secret
        var dumped = ""
        dump(secret, to: &dumped)
        for text in [secret.description, secret.debugDescription, "\(secret)", String(reflecting: secret), dumped] {
            #expect(!canary.occurs(in: text))
            #expect(text.contains("redacted"))
        }
    }

    @Test func comparesByContent() {
        let a = SecretBytes(copying: [1, 2, 3])
        #expect(a == SecretBytes(copying: [1, 2, 3]))
        #expect(a != SecretBytes(copying: [1, 2, 4]))
        #expect(a != SecretBytes(copying: [1, 2]))
        #expect(a.constantTimeEquals(SecretBytes(copying: [1, 2, 3])))
        #expect(!a.constantTimeEquals(SecretBytes(copying: [3, 2, 1])))
    }

    @Test(arguments: [false, true])
    func holdsWhatWasCopied(guarded: Bool) {
        let secret = SecretBytes(copying: Array(0..<200).map(UInt8.init), guarded: guarded)
        #expect(secret.count == 200)
        #expect(secret.copyBytes() == Array(0..<200).map(UInt8.init))
    }

    @Test func constantTimeEqualsComparesContent() {
        #expect(ConstantTime.equals([1, 2, 3], [1, 2, 3]))
        #expect(!ConstantTime.equals([1, 2, 3], [1, 2, 4]))
        #expect(!ConstantTime.equals([1, 2, 3], [1, 2]))
        #expect(ConstantTime.equals([], []))
    }

    @Test func emptyIsFine() {
        let empty = SecretBytes(copying: [])
        #expect(empty.count == 0)
        #expect(empty.copyBytes().isEmpty)
    }

    @Test func randomSecretsDiffer() {
        #expect(SecureRandom.secret(32) != SecureRandom.secret(32))
    }
}
