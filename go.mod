module github.com/assent/assent

go 1.26
