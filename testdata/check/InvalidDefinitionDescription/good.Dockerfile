# check=experimental=InvalidDefinitionDescription
FROM alpine:3.19

# TOOL_VERSION the version of the tool
ARG TOOL_VERSION=1.2
RUN echo "$TOOL_VERSION"
