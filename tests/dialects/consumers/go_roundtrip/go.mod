module evtools.test/go_roundtrip

go 1.19
