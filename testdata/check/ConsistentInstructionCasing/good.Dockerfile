from alpine:3.19
run echo hello
copy a.txt /a.txt
