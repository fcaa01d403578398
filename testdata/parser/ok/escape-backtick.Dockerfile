# escape=`
FROM mcr.microsoft.com/windows/servercore
COPY --from=build `
     C:\app\bin C:\app\
RUN powershell -Command `
    # a comment inside the continuation
    Write-Host "done"
ENV DIR=C:\data `
    OTHER="x y"
