# The test transfer server (tests/src/bin/sstp-transfer-server.rs): the pod the real-node tests
# move checksummed data to through an SSTP tunnel. Test-only, never published; tests/images/build
# makes it offline (`tests/images/build transfer`) and takes its runtime settings from this stage.
FROM scratch
COPY --from=rootfs /rootfs /
ARG VERSION
LABEL org.opencontainers.image.title="sstp-transfer-server" \
      org.opencontainers.image.description="sstp-operator test fixture: checksummed bulk transfers" \
      org.opencontainers.image.version="${VERSION}"
USER 65534:65534
EXPOSE 9000
ENTRYPOINT ["/usr/local/bin/sstp-transfer-server"]
