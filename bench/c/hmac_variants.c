/* Why relay keeps precomputed HMAC-SHA1 pad states: four ways to compute the SRTP tag of a
 * 200-byte packet (204 bytes with the ROC), in plain C, ns per packet; and a fifth, the pad
 * states with the last blocks padded by hand and hashed with SHA1_Transform instead of
 * SHA1_Final (checked equal first), which saves nothing. See bench/RESULTS.md.
 *   cc -O2 bench/c/hmac_variants.c -lcrypto -o /tmp/hmac_variants && /tmp/hmac_variants */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static void be32(unsigned char *p, unsigned v){p[0]=v>>24;p[1]=v>>16;p[2]=v>>8;p[3]=v;}
static void digest(const SHA_CTX *c, unsigned char *md){be32(md,c->h0);be32(md+4,c->h1);be32(md+8,c->h2);be32(md+12,c->h3);be32(md+16,c->h4);}
/* HMAC-SHA1 of n bytes from the pad states, the final blocks built here (FIPS 180-4 5.1.1). */
static void own_padding(const SHA_CTX *i0, const SHA_CTX *o0, const unsigned char *d, size_t n, unsigned char *md){
  SHA_CTX c=*i0; unsigned char tail[128], o[64]={0}; size_t full=n&~(size_t)63, t=n-full, blocks;
  unsigned long long bits=(unsigned long long)(64+n)*8;
  if(full) SHA1_Update(&c,d,full);
  memcpy(tail,d+full,t); tail[t++]=0x80; blocks=t+8<=64?1:2;
  memset(tail+t,0,blocks*64-8-t); be32(tail+blocks*64-8,(unsigned)(bits>>32)); be32(tail+blocks*64-4,(unsigned)bits);
  SHA1_Transform(&c,tail); if(blocks==2) SHA1_Transform(&c,tail+64);
  digest(&c,o); o[20]=0x80; be32(o+60,(64+20)*8); c=*o0; SHA1_Transform(&c,o); digest(&c,md);
}
int main(){
  unsigned char key[20]={3},buf[256]={0},md[20]; unsigned int l; int N=1000000;
  SHA_CTX i0,o0,s; unsigned char blk[64]={0}; memcpy(blk,key,20);
  for(int k=0;k<64;k++)blk[k]^=0x36; SHA1_Init(&i0); SHA1_Update(&i0,blk,64);
  for(int k=0;k<64;k++)blk[k]^=0x36^0x5c; SHA1_Init(&o0); SHA1_Update(&o0,blk,64);
  unsigned char check[20];
  for(size_t n=0;n<300;n++){ buf[0]=n; s=i0; SHA1_Update(&s,buf,n); SHA1_Final(md,&s); s=o0; SHA1_Update(&s,md,20); SHA1_Final(md,&s);
    own_padding(&i0,&o0,buf,n,check); if(memcmp(md,check,20)){printf("own padding differs at %zu bytes\n",n); return 1;} }
  for(int rep=0;rep<3;rep++){
  double t=now();
  for(int i=0;i<N;i++){ buf[0]=i; s=i0; SHA1_Update(&s,buf,204); SHA1_Final(md,&s); s=o0; SHA1_Update(&s,md,20); SHA1_Final(md,&s);}
  double a=(now()-t)/N*1e9; t=now();
  for(int i=0;i<N;i++){ buf[0]=i; HMAC(EVP_sha1(),key,20,buf,204,md,&l);}
  double b=(now()-t)/N*1e9; t=now();
  HMAC_CTX*h=HMAC_CTX_new(); HMAC_Init_ex(h,key,20,EVP_sha1(),NULL);
  for(int i=0;i<N;i++){ buf[0]=i; HMAC_Init_ex(h,NULL,0,NULL,NULL); HMAC_Update(h,buf,204); HMAC_Final(h,md,&l);}
  double c=(now()-t)/N*1e9;
  EVP_MAC*mac=EVP_MAC_fetch(NULL,"HMAC",NULL); EVP_MAC_CTX*mc=EVP_MAC_CTX_new(mac);
  OSSL_PARAM p[]={OSSL_PARAM_construct_utf8_string("digest","SHA1",0),OSSL_PARAM_construct_end()};
  EVP_MAC_init(mc,key,20,p); size_t ol; t=now();
  for(int i=0;i<N;i++){ buf[0]=i; EVP_MAC_init(mc,NULL,0,NULL); EVP_MAC_update(mc,buf,204); EVP_MAC_final(mc,md,&ol,20);}
  double d=(now()-t)/N*1e9; t=now();
  for(int i=0;i<N;i++){ buf[0]=i; own_padding(&i0,&o0,buf,204,md);}
  double e=(now()-t)/N*1e9;
  printf("pads %.0f ns, HMAC() %.0f ns, HMAC_CTX reinit %.0f ns, EVP_MAC reinit %.0f ns, pads with own padding %.0f ns\n",a,b,c,d,e);}
}
